// The fleet client inside a real agent (real buffer, real MLLP listeners, real aedes broker with
// per-agent auth and ACL): policies applied live (only changed sources touched, last good kept on
// failure, invalid documents refused), the policy cache, and commands run at most once.

import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { command, policy, startBroker, startController, type Controller, type TestBroker } from '../../test/helpers/fleet-broker.js';
import { realisticMessage } from '../../test/helpers/messages.js';
import { waitFor } from '../../test/helpers/mllp-harness.js';
import { Agent } from '../agent.js';
import { validateConfig, type AgentConfig } from '../config/index.js';
import { writeCredentials } from '../enroll/index.js';
import { createLogger, type Logger } from '../log.js';
import { MllpClient, readAck } from '../sources/mllp/client.js';
import { COMMAND_LEDGER_FILE, POLICY_CACHE_FILE } from './index.js';

const AGENT_ID = 'agt_fleet_test';
const SECRET = 'fleet-secret-0123456789';

let dir: string;
let broker: TestBroker | undefined;
let cp: Controller | undefined;
let agent: Agent | undefined;
const logs: string[] = [];
const restarts: number[] = [];
const cleanups: (() => unknown)[] = [];

function logger(): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logs.push(line);
      cb();
    },
  });
  return createLogger('info', sink);
}

function localConfig(extra: Record<string, unknown> = {}): AgentConfig {
  const r = validateConfig({
    data_dir: join(dir, 'data'),
    admin: { listen: '127.0.0.1:0' },
    uplink: { enabled: false },
    sources: [{ id: 'keep', type: 'mllp', listen: '127.0.0.1:0' }],
    fleet: { heartbeat_secs: 1, telemetry_secs: 1, keepalive_secs: 2, reconnect_delay_secs: 0.2 },
    ...extra,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

function enroll(url: string): void {
  mkdirSync(join(dir, 'data'), { recursive: true, mode: 0o700 });
  writeCredentials(join(dir, 'data'), { agent_id: AGENT_ID, secret: SECRET, control_plane_url: 'http://127.0.0.1:1', grpc_target: '127.0.0.1:1', enrolled_at: new Date().toISOString(), mqtt_url: url }, { force: true });
}

async function startAgent(config = localConfig()): Promise<Agent> {
  agent = await Agent.start(config, logger(), { requestRestart: () => restarts.push(Date.now()) });
  return agent;
}

function portOf(a: Agent, id: string): number {
  const s = a.sources.find((x) => x.config.id === id);
  const listen = s?.describe().listen as { port: number } | null | undefined;
  if (!listen) throw new Error(`source ${id} is not listening`);
  return listen.port;
}

async function ackOf(port: number, cid: string): Promise<string> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    return readAck(await client.send(realisticMessage(cid, 1))).code;
  } finally {
    await client.close();
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-'));
  logs.length = 0;
  restarts.length = 0;
  broker = await startBroker({ [AGENT_ID]: SECRET });
  enroll(broker.url);
  cp = await startController(broker.url, AGENT_ID);
});

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await agent?.stop();
  agent = undefined;
  await cp?.close();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleet policy applied live', () => {
  it('publishes a retained online status with everything the contract names', async () => {
    await startAgent();
    const s = await cp!.waitForStatus((m) => m.online, 'online status');
    expect(s).toMatchObject({ agent_id: AGENT_ID, online: true, heartbeat_secs: 1, policy: { state: 'none', applied_version: null } });
    expect(s.buffer).toMatchObject({ depth: 0, bytes: 0, full: false });
    expect(s.uplink?.state).toBe('disabled');
    expect(s.sources).toEqual([expect.objectContaining({ id: 'keep', type: 'mllp', state: 'running', counters: expect.objectContaining({ messagesAcked: 0 }) })]);
    // Heartbeat: more statuses keep coming without any change.
    const n = cp!.statuses.length;
    await waitFor(() => cp!.statuses.length >= n + 2, 10_000, 'two heartbeats');
    // Telemetry: flat numeric counters at telemetry_secs.
    await waitFor(() => cp!.telemetry.length >= 1, 10_000, 'telemetry');
    expect(cp!.telemetry[0]).toMatchObject({ agent_id: AGENT_ID, counters: { 'buffer.depth': 0, 'sources.keep.messagesAcked': 0 } });
    // Admin status shows the fleet connection without the password.
    const fleet = agent!.fleetState() as { state: string; broker: string };
    expect(fleet.state).toBe('connected');
    expect(agent!.fleetState()).toMatchObject({ protocol: 'mqtt3.1.1' }); // aedes refuses v5: the client fell back
    expect(fleet.broker).toBe(broker!.url);
    expect(JSON.stringify(agent!.status())).not.toContain(SECRET);
  });

  it('adds a listener, then removes it, while a pipelining sender on another listener loses nothing', async () => {
    await startAgent();
    const keepPort = portOf(agent!, 'keep');
    const keepConfig = agent!.config.sources[0]!;
    // A sender pipelining on `keep` throughout: 8 frames in flight at a time, counting every ACK.
    const sender = await MllpClient.connect({ host: '127.0.0.1', port: keepPort, responseTimeoutMs: 20_000 });
    let sent = 0;
    let acked = 0;
    let running = true;
    const pump = (async () => {
      while (running) {
        const batch = Array.from({ length: 8 }, () => sender.send(realisticMessage('PIPE', ++sent)));
        for (const ack of await Promise.all(batch)) if (readAck(ack).code === 'AA') acked++;
      }
    })();

    await cp!.publishPolicy(policy({ sources: [keepConfig, { id: 'added', type: 'mllp', listen: '127.0.0.1:0' }] }, 1));
    await waitFor(() => agent!.sources.some((s) => s.config.id === 'added'), 10_000, 'listener added');
    const addedPort = portOf(agent!, 'added');
    expect(await ackOf(addedPort, 'ADDED1')).toBe('AA');
    await cp!.waitForStatus((m) => m.policy?.applied_version === 1 && m.policy.state === 'ok', 'v1 applied in status');

    await cp!.publishPolicy(policy({ sources: [keepConfig] }, 2));
    await waitFor(() => !agent!.sources.some((s) => s.config.id === 'added'), 10_000, 'listener removed');
    expect(await refused(addedPort)).toBe(true);
    await waitFor(() => acked >= sent - 8 && sent > 200, 30_000, 'traffic continues after the removal');
    running = false;
    await pump;
    await sender.close();

    expect(acked).toBe(sent);
    const stored = await agent!.buffer.readOldest(0, 1_000_000);
    const pipe = stored.filter((m) => m.sourceId === 'keep');
    expect(pipe.length).toBe(sent);
    expect(new Set(pipe.map((m) => m.meta.controlId)).size).toBe(sent);
    expect(stored.filter((m) => m.sourceId === 'added').length).toBe(1);
    // `keep` was never restarted: one listener start in the logs.
    expect(logs.filter((l) => l.includes('"id":"keep"') && l.includes('MLLP listener started')).length).toBe(1);
    // The applied policy is cached, owner-only.
    expect(statSync(join(dir, 'data', POLICY_CACHE_FILE)).mode & 0o777).toBe(0o600);
  });

  it('a source that cannot apply keeps its last good config; the others apply; status says why', async () => {
    await startAgent();
    const keepPort = portOf(agent!, 'keep');
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => blocker.close(r)));
    const busy = (blocker.address() as { port: number }).port;

    await cp!.publishPolicy(policy({ sources: [{ id: 'keep', type: 'mllp', listen: `127.0.0.1:${busy}` }, { id: 'other', type: 'mllp', listen: '127.0.0.1:0' }], log_level: 'warn' }, 1));
    const s = await cp!.waitForStatus((m) => m.policy?.applied_version === 1, 'v1 reported');
    expect(s.policy?.state).toBe('partial');
    expect(s.policy?.errors).toEqual([{ path: 'sources[0]', message: expect.stringMatching(/keep.*EADDRINUSE.*kept its last good config/) }]);
    const keep = s.sources?.find((x) => x.id === 'keep');
    expect(keep).toMatchObject({ state: 'running', last_error: { code: 'listen_failed' } });
    expect(s.sources?.find((x) => x.id === 'other')?.state).toBe('running');
    // Last good: still on its old port and acknowledging.
    expect(portOf(agent!, 'keep')).toBe(keepPort);
    expect(await ackOf(keepPort, 'LASTGOOD1')).toBe('AA');
    expect(await ackOf(portOf(agent!, 'other'), 'OTHER1')).toBe('AA');
    // The rest of the policy applied.
    expect(agent!.config.log_level).toBe('warn');
  });

  it('an invalid policy is refused whole with every problem by path; nothing changes', async () => {
    await startAgent();
    const before = agent!.config;
    await cp!.publishPolicy({ policy_id: 'pol_test', version: 7, published_at: new Date().toISOString(), config: { sources: [{ id: 'bad id', type: 'mllp', listen: 'nowhere' }], buffer: { max_bytes: 'lots' } } });
    const s = await cp!.waitForStatus((m) => m.policy?.state === 'failed', 'failed state');
    expect(s.policy).toMatchObject({ received_version: 7, applied_version: null });
    expect(s.policy!.errors.map((e) => e.path).sort()).toEqual(['config.buffer.max_bytes', 'config.sources[0].id', 'config.sources[0].listen']);
    expect(agent!.config).toEqual(before);
    expect(agent!.sources.map((x) => x.config.id)).toEqual(['keep']);
  });

  it('ignores a version it already applied and applies buffer size live', async () => {
    await startAgent();
    await cp!.publishPolicy(policy({ buffer: { max_bytes: '2MiB' } }, 3));
    await waitFor(() => agent!.buffer.stats().maxBytes === 2 * 1024 * 1024, 10_000, 'max_bytes applied');
    await cp!.publishPolicy(policy({ buffer: { max_bytes: '3MiB' } }, 3));
    await cp!.publishPolicy(policy({ buffer: { max_bytes: '4MiB' } }, 2));
    await cp!.publishPolicy(policy({ buffer: { max_bytes: '5MiB' } }, 4));
    await waitFor(() => agent!.buffer.stats().maxBytes === 5 * 1024 * 1024, 10_000, 'v4 applied');
    expect(agent!.policy.state()).toMatchObject({ applied_version: 4, state: 'ok' });
    expect(logs.filter((l) => l.includes('"msg":"buffer capacity changed"')).length).toBe(2);
  });

  it('uplink settings from a policy restart the uplink; sources stay untouched', async () => {
    await startAgent();
    const keep = agent!.sources[0];
    expect(agent!.uplinkStatus().state).toBe('disabled');
    await cp!.publishPolicy(policy({ uplink: { enabled: true, retry_max_delay_secs: 1 } }, 6));
    await waitFor(() => agent!.uplinkStatus().state !== 'disabled', 10_000, 'uplink started');
    expect(agent!.uplinkStatus().target).toBe('127.0.0.1:1');
    expect(agent!.config.uplink.retry_max_delay_secs).toBe(1);
    await cp!.publishPolicy(policy({ uplink: { enabled: false } }, 7));
    await waitFor(() => agent!.uplinkStatus().state === 'disabled', 10_000, 'uplink stopped');
    expect(agent!.sources[0]).toBe(keep);
  });

  it('starts from the cached policy when the broker is unreachable, and accepts messages', async () => {
    await startAgent();
    await cp!.publishPolicy(policy({ sources: [{ id: 'from-policy', type: 'mllp', listen: '127.0.0.1:0' }] }, 5));
    await waitFor(() => agent!.policy.state().applied_version === 5, 10_000, 'v5 applied');
    await agent!.stop();
    await cp!.close();
    cp = undefined;
    await broker!.close();
    broker = undefined;

    await startAgent();
    expect(agent!.sources.map((s) => s.config.id)).toEqual(['from-policy']);
    expect(agent!.policy.state()).toMatchObject({ policy_id: 'pol_test', applied_version: 5, state: 'ok' });
    expect(await ackOf(portOf(agent!, 'from-policy'), 'CACHED1')).toBe('AA');
    expect((agent!.fleetState() as { state: string }).state).not.toBe('connected');
  });
});

describe('fleet commands', () => {
  it('runs each command type and publishes its result', async () => {
    await startAgent();
    await cp!.waitForStatus((m) => m.online, 'online');

    await cp!.publishCommand(command('c-ping', 'ping'));
    const ping = await cp!.waitForResult('c-ping');
    expect(ping).toMatchObject({ status: 'succeeded', result: { version: expect.any(String), pong_at: expect.any(String) } });

    await cp!.publishCommand(command('c-flush', 'flush'));
    expect(await cp!.waitForResult('c-flush')).toMatchObject({ status: 'succeeded', result: { pending: 0 } });

    await cp!.publishCommand(command('c-level', 'set-log-level', { level: 'debug' }));
    expect(await cp!.waitForResult('c-level')).toMatchObject({ status: 'succeeded', result: { level: 'debug', previous: 'info' } });
    expect(agent!.config.log_level).toBe('info'); // not persisted in the config
    // It applies at once: the MLLP source's per-frame debug line now appears.
    expect(logs.some((l) => l.includes('frame committed'))).toBe(false);
    expect(await ackOf(portOf(agent!, 'keep'), 'DEBUG1')).toBe('AA');
    await waitFor(() => logs.some((l) => l.includes('frame committed')), 5000, 'debug line after set-log-level');
    await cp!.publishCommand(command('c-badlevel', 'set-log-level', { level: 'loud' }));
    expect(await cp!.waitForResult('c-badlevel')).toMatchObject({ status: 'failed', error: { code: 'invalid_args' } });

    await cp!.publishCommand(command('c-reload', 'reload'));
    expect(await cp!.waitForResult('c-reload')).toMatchObject({ status: 'succeeded', result: { sources: ['keep'], restart_required_for: [] } });

    await cp!.publishCommand(command('c-restart', 'restart'));
    expect(await cp!.waitForResult('c-restart')).toMatchObject({ status: 'succeeded', result: { restarting: true } });
    await waitFor(() => restarts.length === 1, 5000, 'restart requested after the result');
  });

  it('runs a duplicated id once (also after a restart) and refuses an expired command', async () => {
    await startAgent();
    await cp!.waitForStatus((m) => m.online, 'online');
    await cp!.publishCommand(command('dup-1', 'restart'));
    await cp!.publishCommand(command('dup-1', 'restart'));
    await waitFor(() => cp!.results.filter((r) => r.id === 'dup-1').length === 2, 10_000, 'two results (the second republished)');
    expect(restarts.length).toBe(1);
    const [first, second] = cp!.results.filter((r) => r.id === 'dup-1');
    expect(second).toEqual(first);

    await cp!.publishCommand(command('old-1', 'ping', {}, -1000));
    expect(await cp!.waitForResult('old-1')).toMatchObject({ status: 'expired', error: { code: 'expired' } });

    // A new agent on the same data directory: the ledger still knows dup-1.
    await agent!.stop();
    expect(statSync(join(dir, 'data', COMMAND_LEDGER_FILE)).mode & 0o777).toBe(0o600);
    await startAgent();
    await cp!.waitForStatus((m) => m.online && m.uptime_secs !== undefined && m.uptime_secs < 5, 'online again');
    const before = cp!.results.length;
    await cp!.publishCommand(command('dup-1', 'restart'));
    await waitFor(() => cp!.results.length === before + 1, 10_000, 'republished result');
    expect(restarts.length).toBe(1);
  });
});
