// The built control plane runs its embedded MQTT broker: the enrollment answer names it
// (mqtt_url = the host the agent used + the bound MQTT port), the enrolled credentials connect,
// /metrics counts the bus, and revoking the agent ends its MQTT connection and refuses it after.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { adminToken, ControlPlaneApi, startControlPlane, type ControlPlaneProcess } from './helpers/control-plane-process.js';
import { connectClient, connectOk, eventually } from './helpers/mqtt-clients.js';

let cp: ControlPlaneProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  await cp?.stop('SIGKILL');
  cp = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('control plane process with the embedded MQTT broker', () => {
  it('answers enrollment with mqtt_url, lets the agent in with its credentials, and shuts it out on revocation', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-proc-'));
    cp = await startControlPlane({ dataDir: join(dir, 'cp') });
    expect(cp.mqttPort).toBeGreaterThan(0);
    const api = new ControlPlaneApi(cp.url, adminToken(cp.dataDir));
    const { token } = await api.createEnrollmentToken();
    const res = await fetch(`${cp.url}/api/v1/agents/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, name: 'mqtt-test' }) });
    expect(res.status).toBe(201);
    const enrolled = (await res.json()) as { agent_id: string; secret: string; mqtt_url: string };
    expect(enrolled.mqtt_url).toBe(`mqtt://127.0.0.1:${cp.mqttPort}`);

    const agent = await connectOk(enrolled.mqtt_url, { clientId: enrolled.agent_id, username: enrolled.agent_id, password: enrolled.secret });
    expect(await agent.subscribe(`ferry/v1/agents/${enrolled.agent_id}/policy`)).toBe(1);
    expect(await agent.subscribe('#')).toBe(128);

    const metrics = await (await fetch(`${cp.url}/metrics`)).text();
    expect(metrics).toMatch(/ferry_cp_fleet_bus\{counter="connections_accepted"\} 1/);
    expect(metrics).toMatch(/ferry_cp_fleet_bus\{counter="subscribes_refused"\} 1/);

    await api.revokeAgent(enrolled.agent_id);
    await agent.closed;
    const again = await connectClient(enrolled.mqtt_url, { clientId: enrolled.agent_id, username: enrolled.agent_id, password: enrolled.secret });
    expect(again).toMatchObject({ ok: false, code: 5 });
    await eventually(() => cp!.lines.some((l) => l.includes('MQTT connection refused') && l.includes(enrolled.agent_id) && l.includes('revoked')), 'the refusal is logged with the agent id and reason');
    expect(cp.lines.filter((l) => l.includes(enrolled.secret))).toEqual([]);

    const stopped = await cp.stop('SIGTERM');
    expect(stopped.code).toBe(0);
  });
});
