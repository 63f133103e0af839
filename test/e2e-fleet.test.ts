// Fleet management end to end, across real processes only: the built control plane (embedded
// broker, HTTP API) and the built agent enrolled through that API with `ferry-agent enroll`. No
// test broker and no client posing as an agent: everything goes through the API an operator uses
// and the MLLP/MQTT/gRPC paths the products use. One control plane and one agent serve the whole
// file, so the cases run in order and each starts from where the previous one left off:
//   1. a policy adds an MLLP listener, a later version removes it, while a sender on the other
//      listener runs throughout (sent = acknowledged = stored, nothing lost or duplicated);
//   2. a policy that cannot apply (its port is held by this test): last good config kept, the
//      rollout endpoint lists the agent under failed with the error's path and message;
//   3. presence: frozen (SIGSTOP, a silent half-open connection) → offline within the keepalive
//      window; SIGKILL → offline at once, restart → online with the same applied version; the control plane down at the agent's start → cached policy, messages
//      acknowledged, delivered once the control plane is back;
//   4. commands through the API: ping, set-log-level, flush, reload, restart, and an expired one.
// A duplicated command delivery running once is proved at the agent level (test/agent-fleet.test.ts
// "a redelivered restart does not run again", agent/fleet/fleet.test.ts): only the control plane can
// publish to an agent's commands topic, so a duplicate cannot be injected from outside here.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { AGENT_MAIN, startAgent, writeAgentConfig, type AgentProcessOptions, type RunningAgent } from './helpers/agent-process.js';
import { parseJsonLine } from './helpers/child-lines.js';
import { adminToken, ControlPlaneApi, runEnroll, startControlPlane, type ControlPlaneProcess, type StoredMessageMeta } from './helpers/control-plane-process.js';
import { formatTally, LoadSender, tally, waitFor } from './helpers/e2e.js';
import { realisticMessage } from './helpers/messages.js';

/** MQTT keepalive the agent asks for: the broker drops a silent client after 1.5 × this. */
const KEEPALIVE_SECS = 2;
/**
 * Status heartbeat. Kept well above the keepalive window on purpose: the control plane also counts
 * an agent offline after 3 missed heartbeats (15 s), so seeing it offline within the keepalive
 * window proves the last will (not the heartbeat sweep) did it.
 */
const HEARTBEAT_SECS = 5;
/** Slack for scheduling on a loaded machine on top of the keepalive window. */
const PRESENCE_MARGIN_MS = 3000;
const POLICY_ID = 'e2e-ward';
const MAIN = { id: 'main', type: 'mllp', listen: '127.0.0.1:0' } as const;

interface AgentView {
  readonly id: string;
  readonly policy_id: string;
  readonly policy_version: number | null;
  readonly applied_policy_id: string | null;
  readonly applied_policy_version: number | null;
  readonly policy_apply: { state: string; received_version: number | null; errors: { path: string; message: string }[] } | null;
  readonly online: boolean;
  readonly health: string;
  readonly health_reasons: string[];
  readonly last_status_at: string | null;
  readonly uptime_secs: number | null;
  readonly sources: { id: string; state: string; counters: Record<string, number> }[];
}

interface CommandView {
  readonly id: string;
  readonly type: string;
  readonly status: 'pending' | 'succeeded' | 'failed' | 'expired';
  readonly result: Record<string, unknown> | null;
  readonly error: { code: string; message: string } | null;
}

interface AdminStatus {
  readonly buffer: { depth: number };
  readonly uplink: { state: string };
  readonly fleet: { state: string; policy: { policy_id: string | null; applied_version: number | null; state: string } };
  readonly sources: { id: string; listen: { port: number } | null }[];
}

let dir: string;
let cp: ControlPlaneProcess;
let api: ControlPlaneApi;
let agentId: string;
let agentOptions: AgentProcessOptions;
let agent: RunningAgent | undefined;
const held: Server[] = [];
const senders: LoadSender[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-fleet-'));
  cp = await startControlPlane({ dataDir: join(dir, 'cp') });
  api = new ControlPlaneApi(cp.url, adminToken(cp.dataDir));
  const created = await api.request<{ id: string; version: number }>('POST', '/api/v1/policies', { id: POLICY_ID, name: 'E2E ward', config: { sources: [MAIN] } });
  expect(created).toMatchObject({ id: POLICY_ID, version: 1 });
  const { token } = await api.createEnrollmentToken({ policy_id: POLICY_ID, max_uses: 1 });
  agentOptions = {
    dir: join(dir, 'agent'),
    sources: [MAIN],
    config: {
      uplink: { retry_initial_delay_secs: 0.05, retry_max_delay_secs: 0.5 },
      fleet: { keepalive_secs: KEEPALIVE_SECS, heartbeat_secs: HEARTBEAT_SECS, telemetry_secs: HEARTBEAT_SECS, reconnect_delay_secs: 0.2, connect_timeout_secs: 2 },
    },
  };
  const enrolled = await runEnroll(cp.url, token, writeAgentConfig(agentOptions));
  expect(enrolled.code, enrolled.stderr).toBe(0);
  agentId = /enrolled as agent (\S+);/.exec(enrolled.stdout)![1]!;
});

afterAll(async () => {
  for (const s of senders) await s.stop(1000);
  await agent?.stop('SIGKILL');
  await cp?.stop('SIGKILL');
  for (const s of held) s.close();
  rmSync(dir, { recursive: true, force: true });
});

// ---- helpers -------------------------------------------------------------------------------

/** Why the control plane calls the agent degraded. */
function problems(v: AgentView): string[] {
  return v.health_reasons;
}

function view(): Promise<AgentView> {
  return api.request<AgentView>('GET', `/api/v1/agents/${agentId}`);
}

async function waitView(check: (v: AgentView) => boolean, label: string, timeoutMs = 20_000): Promise<AgentView> {
  let last: AgentView | undefined;
  try {
    await waitFor(async () => check((last = await view())), timeoutMs, label, 50);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last view: ${JSON.stringify(last)}`);
  }
  return last!;
}

async function putPolicy(sources: readonly Record<string, unknown>[]): Promise<number> {
  const p = await api.request<{ version: number; changed?: boolean }>('PUT', `/api/v1/policies/${POLICY_ID}`, { config: { sources } });
  expect(p.changed).not.toBe(false);
  return p.version;
}

/** The agent's admin port as of its latest start (a fleet restart moves it when configured as port 0). */
function adminPort(a: RunningAgent): number {
  for (let i = a.lines.length - 1; i >= 0; i--) {
    const e = parseJsonLine(a.lines[i]!);
    if (e?.msg === 'admin HTTP listening') return (e.listen as { port: number }).port;
  }
  throw new Error('the agent never logged its admin port');
}

async function adminStatus(a: RunningAgent): Promise<AdminStatus> {
  const res = await fetch(`http://127.0.0.1:${adminPort(a)}/status`);
  return (await res.json()) as AdminStatus;
}

async function listenPort(a: RunningAgent, sourceId: string): Promise<number | undefined> {
  return (await adminStatus(a)).sources.find((s) => s.id === sourceId)?.listen?.port;
}

/** `ferry-agent status --admin URL` (the text an operator reads). */
function statusText(a: RunningAgent): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [AGENT_MAIN, 'status', '--admin', `http://127.0.0.1:${adminPort(a)}`], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout))),
  );
}

/** Sends the messages on one connection, one after the other; answers each ACK code. */
async function sendVia(port: number, prefix: string, count: number): Promise<string[]> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    const codes: string[] = [];
    for (let n = 1; n <= count; n++) codes.push(readAck(await client.send(realisticMessage(prefix, n))).code);
    return codes;
  } finally {
    await client.close();
  }
}

/** Whether a TCP connect to the port is refused (nothing listens there). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** A socket this test listens on, so a policy naming its port cannot bind it. */
async function holdPort(): Promise<number> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  held.push(server);
  return (server.address() as { port: number }).port;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function issue(type: string, extra: { args?: Record<string, unknown>; expires_in_secs?: number } = {}): Promise<CommandView> {
  const cmd = await api.request<CommandView>('POST', `/api/v1/agents/${agentId}/commands`, { type, ...extra });
  expect(cmd).toMatchObject({ type, status: 'pending' });
  return cmd;
}

async function finished(cmdId: string, timeoutMs = 15_000): Promise<CommandView> {
  let last: CommandView | undefined;
  await waitFor(async () => (last = await api.request<CommandView>('GET', `/api/v1/agents/${agentId}/commands/${cmdId}`)).status !== 'pending', timeoutMs, `command ${cmdId} to finish`, 50);
  return last!;
}

function storedFor(rows: readonly StoredMessageMeta[], sourceId: string, prefix: string): StoredMessageMeta[] {
  return rows.filter((r) => r.source_id === sourceId && r.control_id.startsWith(prefix));
}

/** The rows stored for the source and prefix once at least `count` are there and the agent's buffer is empty (nothing more on its way). */
async function waitStored(sourceId: string, prefix: string, count: number): Promise<StoredMessageMeta[]> {
  const list = async (): Promise<StoredMessageMeta[]> => storedFor(await api.listMessages({ agent: agentId, source: sourceId }), sourceId, prefix);
  await waitFor(async () => (await list()).length >= count && (await adminStatus(agent!)).buffer.depth === 0, 20_000, `${count} ${prefix} messages stored and the agent drained`, 100);
  return list();
}

function logged(a: RunningAgent, msg: string, commandId: string): boolean {
  return a.lines.some((l) => {
    const e = parseJsonLine(l);
    return e?.msg === msg && e.command_id === commandId;
  });
}

// ---- the cases, in order -------------------------------------------------------------------

describe('fleet end to end: control plane process + enrolled agent process', () => {
  it('a policy adds an MLLP listener that ACKs within seconds; a later version removes only it while a sender on the other listener loses nothing', async () => {
    agent = await startAgent(agentOptions);
    const first = await waitView((v) => v.online && v.applied_policy_version === 1, 'online with policy v1 applied');
    expect(first).toMatchObject({ policy_id: POLICY_ID, policy_version: 1, applied_policy_id: POLICY_ID, health: 'healthy' });
    const mainPort = agent.mllpPorts.main!;

    const sender = new LoadSender({ port: () => mainPort, connections: 2, prefix: 'FLTMAIN', pauseMs: 5 });
    senders.push(sender);
    sender.start();
    await sender.waitAcked(20, 15_000);

    // v2: a second listener on a port no one uses yet.
    const labPort = await freePort();
    const v2 = await putPolicy([MAIN, { id: 'lab', type: 'mllp', listen: `127.0.0.1:${labPort}` }]);
    expect(v2).toBe(2);
    const putAt = Date.now();
    await waitFor(async () => !(await refused(labPort)), 15_000, 'the lab listener to accept connections');
    expect(await sendVia(labPort, 'FLTLAB', 3)).toEqual(['AA', 'AA', 'AA']);
    const labUpMs = Date.now() - putAt;
    expect((await waitView((v) => v.applied_policy_version === 2, 'v2 applied')).policy_apply).toEqual({ state: 'ok', received_version: 2, errors: [] });
    expect(await listenPort(agent, 'main')).toBe(mainPort);

    // An open connection on lab: removing the listener closes it (and only it).
    const labClient = await MllpClient.connect({ host: '127.0.0.1', port: labPort, responseTimeoutMs: 10_000 });
    const labClosed = new Promise<void>((resolve) => labClient.raw.once('close', () => resolve()));
    const ackedBeforeRemoval = sender.acked;
    const v3 = await putPolicy([MAIN]);
    expect(v3).toBe(3);
    await waitView((v) => v.applied_policy_version === 3 && v.policy_apply?.state === 'ok', 'v3 applied');
    await labClosed;
    expect(await refused(labPort)).toBe(true);
    expect((await adminStatus(agent)).sources.map((s) => s.id)).toEqual(['main']);
    // The main sender went on through both changes, on the same connections.
    await sender.waitAcked(20, 15_000);
    expect(sender.acked).toBeGreaterThan(ackedBeforeRemoval);
    await sender.stop();
    senders.splice(senders.indexOf(sender), 1);

    const mainRows = await waitStored('main', 'FLTMAIN', sender.acked);
    const t = tally(sender, mainRows);
    console.log(formatTally('e2e-fleet add/remove listener', t, { lab_up_ms: labUpMs, retries: sender.retries }));
    expect(t).toEqual({ sent: sender.sent, acknowledged: sender.sent, stored: sender.sent, lost: 0, duplicated: 0, corrupt: 0, outOfOrder: 0 });
    // No connection to main was dropped by either change: no message needed a second attempt.
    expect(sender.retries).toBe(0);
    const labRows = await waitStored('lab', 'FLTLAB', 3);
    expect(labRows.map((r) => r.control_id).sort()).toEqual(['FLTLAB0000000001', 'FLTLAB0000000002', 'FLTLAB0000000003']);
  });

  it('a policy that cannot apply (its port is held) keeps the last good listener, and the rollout shows the agent failed with the error', async () => {
    const a = agent!;
    const mainPort = (await listenPort(a, 'main'))!;
    const sender = new LoadSender({ port: () => mainPort, connections: 1, prefix: 'FLTHOLD', pauseMs: 5 });
    senders.push(sender);
    sender.start();
    await sender.waitAcked(10, 15_000);

    const busy = await holdPort();
    const v4 = await putPolicy([{ ...MAIN, listen: `127.0.0.1:${busy}` }]);
    expect(v4).toBe(4);
    const shown = await waitView((v) => v.policy_apply?.received_version === 4, 'v4 received');
    expect(shown.policy_apply?.state).toBe('partial');
    expect(shown.health).toBe('degraded');
    expect(shown.health_reasons.join('\n')).toMatch(/policy version 4 applied partially: sources\[0\]/);

    const rollout = await api.request<{ latest_version: number; applied_latest: number; agents_total: number; failed: { agent_id: string; version: number; state: string; errors: { path: string; message: string }[] }[]; behind: unknown[] }>('GET', `/api/v1/policies/${POLICY_ID}/rollout`);
    expect(rollout).toMatchObject({ latest_version: 4, agents_total: 1, applied_latest: 0, behind: [] });
    expect(rollout.failed).toHaveLength(1);
    expect(rollout.failed[0]).toMatchObject({ agent_id: agentId, version: 4, state: 'partial' });
    expect(rollout.failed[0]!.errors).toHaveLength(1);
    expect(rollout.failed[0]!.errors[0]!.path).toBe('sources[0]');
    expect(rollout.failed[0]!.errors[0]!.message).toMatch(/source main cannot listen .*(EADDRINUSE|in use).*kept its last good config/i);

    // The operator's view on the agent's host says the same.
    const text = await statusText(a);
    expect(text).toMatch(new RegExp(`^fleet: connected \\(broker mqtt://127\\.0\\.0\\.1:${cp.mqttPort}, mqtt3\\.1\\.1\\) since `, 'm'));
    expect(text).toContain(`  policy ${POLICY_ID}: v4 applied; partial\n    sources[0]: source main cannot listen on `);

    // Last good: main still listens where it did and still ACKs; nothing bound the held port.
    expect(await listenPort(a, 'main')).toBe(mainPort);
    await sender.waitAcked(10, 15_000);
    expect(await sendVia(mainPort, 'FLTKEPT', 2)).toEqual(['AA', 'AA']);
    await sender.stop();
    senders.splice(senders.indexOf(sender), 1);
    expect(sender.retries).toBe(0);
    const t = tally(sender, await waitStored('main', 'FLTHOLD', sender.acked));
    expect(t).toMatchObject({ acknowledged: sender.sent, stored: sender.sent, lost: 0, duplicated: 0 });

    // v5 is good again (and adds a source only the policy has, which the cache case below relies on).
    const v5 = await putPolicy([MAIN, { id: 'ward', type: 'mllp', listen: '127.0.0.1:0' }]);
    expect(v5).toBe(5);
    const ok = await waitView((v) => v.applied_policy_version === 5 && v.policy_apply?.state === 'ok' && problems(v).length === 0, 'v5 applied cleanly');
    expect(ok.policy_apply?.errors).toEqual([]);
    expect(await api.request('GET', `/api/v1/policies/${POLICY_ID}/rollout`)).toMatchObject({ latest_version: 5, applied_latest: 1, failed: [], behind: [] });
    expect(await statusText(a)).toContain(`  policy ${POLICY_ID}: v5 applied; ok\n`);
  });

  it('frozen or SIGKILLed: offline within the keepalive window; restarted, online with the same applied version; with the control plane down the agent starts from its cached policy, ACKs, and delivers once it is back', async () => {
    const before = await waitView((v) => v.online && v.applied_policy_version === 5, 'online on v5');

    // Frozen (SIGSTOP): the TCP connection stays open but goes silent, so only the broker's keepalive
    // can notice; the last will must mark it offline within 1.5 × keepalive (+ margin), long before
    // the heartbeat sweep would (3 × heartbeat).
    const pid = agent!.child.pid!;
    const frozenAt = Date.now();
    process.kill(pid, 'SIGSTOP');
    let silent: AgentView;
    try {
      silent = await waitView((v) => !v.online, 'offline while frozen', KEEPALIVE_SECS * 1500 + PRESENCE_MARGIN_MS + 5000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const silentMs = Date.now() - frozenAt;
    console.log(`[e2e-fleet presence] frozen agent offline after ${silentMs} ms (keepalive ${KEEPALIVE_SECS} s, heartbeat ${HEARTBEAT_SECS} s)`);
    // The broker's 1.5 × keepalive runs from the last packet it got, up to one keepalive before the freeze.
    expect(silentMs).toBeGreaterThanOrEqual(KEEPALIVE_SECS * 500);
    expect(silentMs).toBeLessThan(KEEPALIVE_SECS * 1500 + PRESENCE_MARGIN_MS);
    expect(silent.health_reasons).toEqual(['the agent lost its connection (last will)']);
    expect(silent.applied_policy_version).toBe(5);
    // Thawed, it reconnects by itself.
    await waitView((v) => v.online && v.last_status_at! > silent.last_status_at! && v.applied_policy_version === 5, 'online again after SIGCONT');

    const killedAt = Date.now();
    await agent!.stop('SIGKILL');
    const offline = await waitView((v) => !v.online, 'offline after SIGKILL', KEEPALIVE_SECS * 1500 + PRESENCE_MARGIN_MS + 5000);
    const offlineMs = Date.now() - killedAt;
    console.log(`[e2e-fleet presence] offline ${offlineMs} ms after SIGKILL (keepalive ${KEEPALIVE_SECS} s, heartbeat ${HEARTBEAT_SECS} s)`);
    expect(offlineMs).toBeLessThan(KEEPALIVE_SECS * 1500 + PRESENCE_MARGIN_MS);
    expect(offline).toMatchObject({ health: 'offline', applied_policy_version: 5 });
    expect(offline.health_reasons).toEqual(['the agent lost its connection (last will)']);

    agent = await startAgent(agentOptions);
    const back = await waitView((v) => v.online && v.last_status_at !== null && v.last_status_at > offline.last_status_at!, 'online again');
    expect(back).toMatchObject({ applied_policy_id: POLICY_ID, applied_policy_version: before.applied_policy_version });
    expect(problems(back)).toEqual([]);
    expect(back.policy_apply).toEqual({ state: 'ok', received_version: 5, errors: [] });

    // Control plane down (clean stop), then the agent (clean stop), then the agent starts alone.
    await agent.stop('SIGTERM');
    // The agent's credentials name the gRPC target and the broker: the control plane comes back on those ports.
    const ports = { grpc: cp.grpcPort, mqtt: cp.mqttPort };
    expect(await cp.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    agent = await startAgent(agentOptions);
    // Started from the cache: "ward" exists only in the policy, not in the local file.
    expect(Object.keys(agent.mllpPorts).sort()).toEqual(['main', 'ward']);
    const alone = await adminStatus(agent);
    expect(alone.fleet.policy).toMatchObject({ policy_id: POLICY_ID, applied_version: 5, state: 'ok' });
    expect(alone.fleet.state).not.toBe('connected');
    expect(alone.uplink.state).not.toBe('connected');
    expect(await sendVia(agent.mllpPorts.ward!, 'FLTCACHEW', 5)).toEqual(Array(5).fill('AA'));
    expect(await sendVia(agent.mllpPorts.main!, 'FLTCACHEM', 5)).toEqual(Array(5).fill('AA'));
    expect((await adminStatus(agent)).buffer.depth).toBe(10);

    cp = await startControlPlane({ dataDir: cp.dataDir, grpcPort: ports.grpc, mqttPort: ports.mqtt });
    api.baseUrl = cp.url;
    const ward = await waitStored('ward', 'FLTCACHEW', 5);
    const main = await waitStored('main', 'FLTCACHEM', 5);
    // Exactly once: every control id once, nothing else under these prefixes.
    expect(ward.map((r) => r.control_id).sort()).toEqual([1, 2, 3, 4, 5].map((n) => `FLTCACHEW${String(n).padStart(10, '0')}`));
    expect(main.map((r) => r.control_id).sort()).toEqual([1, 2, 3, 4, 5].map((n) => `FLTCACHEM${String(n).padStart(10, '0')}`));
    await waitView((v) => v.online && v.applied_policy_version === 5, 'online again on the restarted control plane');
  });

  it('commands through the API: ping, set-log-level, flush, reload, restart run on the agent with their results; an expired one is refused', async () => {
    const a = agent!;
    await waitView((v) => v.online, 'online');

    const ping = await finished((await issue('ping')).id);
    expect(ping).toMatchObject({ type: 'ping', status: 'succeeded', error: null });
    expect(typeof ping.result?.pong_at).toBe('string');
    expect(typeof ping.result?.version).toBe('string');

    const level = await finished((await issue('set-log-level', { args: { level: 'debug' } })).id);
    expect(level).toMatchObject({ status: 'succeeded', result: { level: 'debug', previous: 'info' } });
    // A bad level never reaches the agent: the API answers 422 with the path.
    await expect(api.request('POST', `/api/v1/agents/${agentId}/commands`, { type: 'set-log-level', args: { level: 'loud' } })).rejects.toMatchObject({ status: 422 });

    const flush = await finished((await issue('flush')).id);
    expect(flush).toMatchObject({ status: 'succeeded', result: { pending: 0, uplink: 'connected' } });

    const reload = await finished((await issue('reload')).id);
    expect(reload.status).toBe('succeeded');
    expect(reload.result).toMatchObject({ policy: { policy_id: POLICY_ID, applied_version: 5, state: 'ok' }, sources: ['main', 'ward'] });

    const startsBefore = a.lines.filter((l) => parseJsonLine(l)?.msg === 'agent started').length;
    const beforeRestart = await view();
    const restart = await finished((await issue('restart')).id);
    expect(restart).toMatchObject({ status: 'succeeded', result: { restarting: true } });
    await waitFor(() => a.lines.filter((l) => parseJsonLine(l)?.msg === 'agent started').length === startsBefore + 1, 20_000, 'the agent to start again in the same process');
    expect(a.child.exitCode).toBeNull();
    // The new instance's counters start at zero (the old one had acknowledged 5 on ward).
    const wardAcked = (v: AgentView): number | undefined => v.sources.find((s) => s.id === 'ward')?.counters.messagesAcked;
    expect(wardAcked(beforeRestart)).toBe(5);
    const restarted = await waitView((v) => v.online && v.last_status_at! > beforeRestart.last_status_at! && wardAcked(v) === 0, 'online after the restart');
    expect(restarted.applied_policy_version).toBe(5);
    expect(problems(restarted)).toEqual([]);
    expect(await sendVia((await listenPort(a, 'ward'))!, 'FLTRESTART', 1)).toEqual(['AA']);

    // Expired: issued while the agent is away, past its expiry when the agent returns.
    await a.stop('SIGTERM');
    await waitView((v) => !v.online, 'offline after a clean stop');
    const late = await issue('ping', { expires_in_secs: 1 });
    expect((await finished(late.id, 10_000)).status).toBe('expired');
    agent = await startAgent(agentOptions);
    const b = agent;
    await waitFor(() => logged(b, 'command refused: expired before it arrived', late.id), 20_000, 'the agent to refuse the expired command');
    expect(logged(b, 'running command', late.id)).toBe(false);
    const after = await api.request<CommandView>('GET', `/api/v1/agents/${agentId}/commands/${late.id}`);
    expect(after).toMatchObject({ status: 'expired', result: null });
    expect(after.error?.code).toBe('expired');
    // Every command is in the audit log.
    const audit = await api.request<{ items: { action: string; details: { command_id?: string } }[] }>('GET', '/api/v1/audit?limit=500');
    const issued = audit.items.filter((e) => e.action === 'command.issued').map((e) => e.details.command_id);
    for (const id of [ping.id, level.id, flush.id, reload.id, restart.id, late.id]) expect(issued).toContain(id);
  });
});
