// The fleet client in the real agent process (dist/agent/main.js) against a real MQTT broker
// (aedes with per-agent auth and ACL): presence (last will on SIGKILL, explicit offline on a clean
// stop, online again with the same applied version), the cached policy when the broker is down,
// a policy adding a listener, and the restart command (in-process restart, run once).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeCredentials } from '../agent/enroll/index.js';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { startAgent, type RunningAgent } from './helpers/agent-process.js';
import { parseJsonLine } from './helpers/child-lines.js';
import { command, policy, startBroker, startController, type Controller, type TestBroker } from './helpers/fleet-broker.js';
import { realisticMessage } from './helpers/messages.js';
import { waitFor } from './helpers/mllp-harness.js';

const AGENT_ID = 'agt_proc_fleet';
const SECRET = 'proc-fleet-secret-abcdef';

let dir: string;
let broker: TestBroker | undefined;
let cp: Controller | undefined;
const agents: RunningAgent[] = [];

function enroll(url: string): void {
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeCredentials(dataDir, { agent_id: AGENT_ID, secret: SECRET, control_plane_url: 'http://127.0.0.1:1', grpc_target: '127.0.0.1:1', enrolled_at: new Date().toISOString(), mqtt_url: url }, { force: true });
}

async function run(sources?: Record<string, unknown>[]): Promise<RunningAgent> {
  const a = await startAgent({
    dir,
    config: { uplink: { enabled: false }, fleet: { heartbeat_secs: 1, telemetry_secs: 1, keepalive_secs: 1, reconnect_delay_secs: 0.2, connect_timeout_secs: 2 } },
    ...(sources ? { sources } : {}),
  });
  agents.push(a);
  return a;
}

async function adminStatus(a: RunningAgent): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${a.adminPort}/status`);
  return (await res.json()) as Record<string, unknown>;
}

async function mllpPortOf(a: RunningAgent, id: string): Promise<number | undefined> {
  const s = await adminStatus(a);
  const src = (s.sources as { id: string; listen: { port: number } | null }[]).find((x) => x.id === id);
  return src?.listen?.port;
}

async function ackOf(port: number, cid: string): Promise<string> {
  const c = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    return readAck(await c.send(realisticMessage(cid, 1))).code;
  } finally {
    await c.close();
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-agent-fleet-'));
  broker = await startBroker({ [AGENT_ID]: SECRET });
  enroll(broker.url);
  cp = await startController(broker.url, AGENT_ID);
});

afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop('SIGKILL');
  await cp?.close();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent process on the fleet bus', () => {
  it('SIGKILL: the last will marks it offline; restarted, it is online with the same applied version', async () => {
    const a = await run();
    await cp!.publishPolicy(policy({ log_level: 'info', sources: [{ id: 'test', type: 'mllp', listen: '127.0.0.1:0' }] }, 4));
    await cp!.waitForStatus((s) => s.online && s.policy?.applied_version === 4, 'online with v4 applied');
    const killedAt = Date.now();
    await a.stop('SIGKILL');
    const will = await cp!.waitForStatus((s) => !s.online, 'last will', 10_000);
    expect(will).toMatchObject({ agent_id: AGENT_ID, online: false, reason: 'lost' });
    expect(Date.now() - killedAt).toBeLessThan(10_000);

    await run();
    const back = await cp!.waitForStatus((s) => s.online && s.sent_at > will.sent_at, 'online again');
    expect(back.policy).toMatchObject({ policy_id: 'pol_test', applied_version: 4, state: 'ok' });
  });

  it('a clean stop publishes a retained offline status (reason shutdown) before exiting', async () => {
    const a = await run();
    await cp!.waitForStatus((s) => s.online, 'online');
    const exit = await a.stop('SIGTERM');
    expect(exit.code).toBe(0);
    // A subscriber arriving now gets the retained offline status.
    await cp!.close();
    cp = await startController(broker!.url, AGENT_ID);
    const retained = await cp.waitForStatus(() => true, 'retained status');
    expect(retained).toMatchObject({ online: false, reason: 'shutdown' });
  });

  it('a policy adds a listener that ACKs; with the broker unreachable a restarted agent runs the cached policy', async () => {
    const a = await run();
    await cp!.publishPolicy(policy({ sources: [{ id: 'test', type: 'mllp', listen: '127.0.0.1:0' }, { id: 'lab', type: 'mllp', listen: '127.0.0.1:0' }] }, 9));
    await waitFor(async () => (await mllpPortOf(a, 'lab')) !== undefined, 15_000, 'lab listener up');
    expect(await ackOf((await mllpPortOf(a, 'lab'))!, 'LAB1')).toBe('AA');
    const fleet = (await adminStatus(a)).fleet as { state: string; broker: string; policy: { applied_version: number } };
    expect(fleet).toMatchObject({ state: 'connected', broker: broker!.url, policy: { applied_version: 9 } });

    await a.stop('SIGTERM');
    await cp!.close();
    cp = undefined;
    await broker!.close();
    broker = undefined;

    const b = await run();
    expect(Object.keys(b.mllpPorts).sort()).toEqual(['lab', 'test']);
    expect(await ackOf(b.mllpPorts.lab!, 'LAB2')).toBe('AA');
    const status = await adminStatus(b);
    expect(status.fleet).toMatchObject({ policy: { applied_version: 9, state: 'ok' } });
    expect((status.fleet as { state: string }).state).not.toBe('connected');
  });

  it('restart: the result first, then the agent restarts in place; a redelivered restart does not run again', async () => {
    const a = await run();
    await cp!.waitForStatus((s) => s.online, 'online');
    await cp!.publishCommand(command('restart-1', 'restart'));
    expect(await cp!.waitForResult('restart-1')).toMatchObject({ status: 'succeeded', result: { restarting: true } });
    const started = (): number => a.lines.filter((l) => parseJsonLine(l)?.msg === 'agent started').length;
    await waitFor(() => started() === 2, 20_000, 'second start in the same process');
    expect(a.child.exitCode).toBeNull();
    await cp!.waitForStatus((s) => s.online && (s.uptime_secs ?? 99) < 3, 'online after the restart');
    // The broker redelivers nothing by itself here; publish the same id again, as a retry would.
    const before = cp!.results.length;
    await cp!.publishCommand(command('restart-1', 'restart'));
    await waitFor(() => cp!.results.length > before, 10_000, 'earlier result republished');
    await new Promise((r) => setTimeout(r, 1000));
    expect(started()).toBe(2);
    // Offline with reason "restart" was published on the way down.
    expect(cp!.statuses.some((s) => !s.online && s.reason === 'restart')).toBe(true);
  });
});
