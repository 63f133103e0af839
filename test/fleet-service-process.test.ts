// The built control plane runs the fleet service: a policy made over HTTP reaches an enrolled
// agent's MQTT client retained; its status shows in GET /api/v1/agents; after SIGKILL and a restart
// of the control plane the status is still known (stored) and the policy is republished.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import sqlite3 from 'sqlite3';
import { adminToken, startControlPlane, type ControlPlaneProcess } from './helpers/control-plane-process.js';
import { connectOk, eventually, type TestClient } from './helpers/mqtt-clients.js';

let cp: ControlPlaneProcess | undefined;
let dir: string | undefined;
const clients: TestClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await cp?.stop('SIGKILL');
  cp = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Whether the control plane's store holds a status row for the agent (read-only, beside the running process). */
function storedStatus(path: string, agentId: string): Promise<boolean> {
  return new Promise((resolve) => {
    const db = new sqlite3.Database(path, sqlite3.OPEN_READONLY, (err) => {
      if (err) return resolve(false);
      db.get('SELECT 1 AS x FROM agent_status WHERE agent_id = ?', [agentId], (e: Error | null, row: unknown) => db.close(() => resolve(!e && row !== undefined)));
    });
  });
}

async function api(method: string, path: string, json?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cp!.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken(cp!.dataDir)}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('control plane process: fleet service', () => {
  it('publishes a policy to an enrolled agent, shows its status, and keeps both across a control-plane restart', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-svc-'));
    cp = await startControlPlane({ dataDir: join(dir, 'cp') });
    expect((await api('POST', '/api/v1/policies', { id: 'ward', name: 'Ward', config: { log_level: 'debug' } })).status).toBe(201);
    const token = (await api('POST', '/api/v1/enrollment-tokens', { policy_id: 'ward' })).body.token as string;
    const res = await fetch(`${cp.url}/api/v1/agents/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    const agent = (await res.json()) as { agent_id: string; secret: string; mqtt_url: string };
    const connect = async (): Promise<TestClient> => {
      const c = await connectOk(agent.mqtt_url, { clientId: agent.agent_id, username: agent.agent_id, password: agent.secret });
      clients.push(c);
      await c.subscribe(`ferry/v1/agents/${agent.agent_id}/policy`);
      return c;
    };
    const policies = (c: TestClient) => c.received.filter((m) => m.topic.endsWith('/policy')).map((m) => JSON.parse(m.payload) as { policy_id: string; version: number; config: Record<string, unknown> });

    let client = await connect();
    await eventually(() => policies(client).length === 1, 'the retained policy');
    expect(policies(client)[0]).toMatchObject({ policy_id: 'ward', version: 1, config: { log_level: 'debug' } });
    const status = { agent_id: agent.agent_id, online: true, version: '9.9.9', heartbeat_secs: 60, policy: { policy_id: 'ward', applied_version: 1, received_version: 1, state: 'ok', errors: [] }, sent_at: new Date().toISOString() };
    await client.publish(`ferry/v1/agents/${agent.agent_id}/status`, JSON.stringify(status), { retain: true });
    const shown = async () => ((await api('GET', '/api/v1/agents')).body.items as Array<Record<string, unknown>>)[0]!;
    await eventually(async () => (await shown()).online === true, 'online in the listing');
    expect(await shown()).toMatchObject({ id: agent.agent_id, online: true, health: 'healthy', version: '9.9.9', policy_id: 'ward', policy_version: 1, applied_policy_version: 1 });
    const rollout = await api('GET', '/api/v1/policies/ward/rollout');
    expect(rollout.body).toMatchObject({ agents_total: 1, applied_latest: 1, behind: [], failed: [] });

    // SIGKILL once the coalesced flush has written the status: it survives; the broker's retained messages do not.
    const dataDir = cp.dataDir;
    await eventually(() => storedStatus(join(dataDir, 'store.db'), agent.agent_id), 'the status flushed to the store');
    await cp.stop('SIGKILL');
    client.destroy();
    cp = await startControlPlane({ dataDir });
    expect(await shown()).toMatchObject({ version: '9.9.9', applied_policy_version: 1 });
    agent.mqtt_url = `mqtt://127.0.0.1:${cp.mqttPort}`;
    client = await connect();
    await eventually(() => policies(client).length === 1, 'the policy republished at start');
    expect(policies(client)[0]).toMatchObject({ policy_id: 'ward', version: 1 });
    expect((await cp.stop('SIGTERM')).code).toBe(0);
  });
});
