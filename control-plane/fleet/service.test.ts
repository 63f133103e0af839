// The fleet service against a real embedded broker (aedes on a loopback port), a real SQLite store
// and the real HTTP app; agents are mqtt.js clients connecting with their enrolled credentials.
// The service's clock is injected, so "heartbeat late" and "command expired" need no sleeping.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentTopic, type StatusMessage } from '../../proto/fleet/index.js';
import { connectOk, eventually, type TestClient } from '../../test/helpers/mqtt-clients.js';
import { createLogger } from '../log.js';
import { createApp, createMetrics } from '../http/index.js';
import { SqliteMessageStore } from '../store/index.js';
import { createFleetBus, FleetService, type FleetBus } from './index.js';

let dir: string;
let store: SqliteMessageStore;
let bus: FleetBus & { address?(): { host: string; port: number } | undefined };
let service: FleetService;
let app: ReturnType<typeof createApp>;
let clock: number;
let url: string;
let adminToken: string;
let operatorToken: string;
let viewerToken: string;
const clients: TestClient[] = [];

const log = createLogger('silent');

async function startService(): Promise<void> {
  bus = createFleetBus({ listen: '127.0.0.1:0' }, { store, log });
  service = new FleetService(store, bus, log, { now: () => clock, flushIntervalMs: 20, sweepIntervalMs: 20, backlogSampleGapMs: 1000 });
  await service.start();
  url = `mqtt://127.0.0.1:${bus.address!()!.port}`;
  app = createApp({
    store,
    log,
    fleet: service,
    now: () => clock,
    // The gRPC ingest is not under test here; enrollment only needs its port for grpc_target.
    ingest: { connectedAgents: () => new Map(), address: () => ({ host: '127.0.0.1', port: 50099 }), health: () => ({ state: 'running', message: 'ok' }) },
  }, { metrics: createMetrics({ fleetGauges: () => service.gauges() }) });
}

async function stopService(): Promise<void> {
  await service.stop();
  await bus.close();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-fleet-'));
  clock = 1_764_000_000_000;
  store = await SqliteMessageStore.open({ dataDir: dir, now: () => clock });
  adminToken = (await store.createApiToken({ name: 'admin', role: 'admin' })).token;
  operatorToken = (await store.createApiToken({ name: 'operator', role: 'operator' })).token;
  viewerToken = (await store.createApiToken({ name: 'viewer', role: 'viewer' })).token;
  await startService();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await stopService();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, json?: unknown, token = adminToken): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await app.request(`http://cp.example${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Enrolls through the API (so the enrollment hook publishes the agent's policy) and returns its credentials. */
async function enroll(policyId = 'default', name = 'agent'): Promise<{ id: string; secret: string }> {
  const t = await call('POST', '/api/v1/enrollment-tokens', { policy_id: policyId });
  expect(t.status).toBe(201);
  const e = await app.request('http://cp.example/api/v1/agents/enroll', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: t.body.token, name }) });
  expect(e.status).toBe(201);
  const creds = (await e.json()) as { agent_id: string; secret: string };
  return { id: creds.agent_id, secret: creds.secret };
}

async function connectAgent(agent: { id: string; secret: string }, withWill = true): Promise<TestClient> {
  const will = { topic: agentTopic(agent.id, 'status'), payload: Buffer.from(JSON.stringify({ agent_id: agent.id, online: false, reason: 'lost', sent_at: new Date(clock).toISOString() })), qos: 1 as const, retain: true };
  const client = await connectOk(url, { clientId: agent.id, username: agent.id, password: agent.secret, ...(withWill ? { will } : {}) });
  clients.push(client);
  return client;
}

function status(agentId: string, extra: Partial<StatusMessage> = {}): string {
  const s: StatusMessage = {
    agent_id: agentId,
    online: true,
    version: '0.1.0',
    uptime_secs: 12,
    heartbeat_secs: 10,
    buffer: { depth: 3, bytes: 3000, max_bytes: 1_000_000, oldest_pending_age_secs: 1.5, full: false },
    uplink: { state: 'connected' },
    sources: [{ id: 'adt', type: 'mllp', state: 'running', counters: { messages: 7 } }],
    sent_at: new Date(clock).toISOString(),
    ...extra,
  };
  return JSON.stringify(s);
}

async function agentJson(id: string): Promise<Record<string, unknown>> {
  const r = await call('GET', `/api/v1/agents/${id}`, undefined, viewerToken);
  expect(r.status).toBe(200);
  return r.body;
}

function policiesReceived(client: TestClient): Array<{ policy_id: string; version: number; config: Record<string, unknown> }> {
  return client.received.filter((m) => m.topic.endsWith('/policy') && m.payload.length > 0).map((m) => JSON.parse(m.payload) as { policy_id: string; version: number; config: Record<string, unknown> });
}

describe('FleetService: policies over MQTT', () => {
  it('publishes retained at enrollment, on every new version and on a move; audits each change with a diff', async () => {
    const created = await call('POST', '/api/v1/policies', { id: 'lab', name: 'Lab', config: { log_level: 'info', buffer: { max_bytes: '1GiB' } } });
    expect(created).toMatchObject({ status: 201, body: { id: 'lab', version: 1, config: { log_level: 'info', buffer: { max_bytes: '1GiB' } }, agents: 0 } });
    const agent = await enroll('lab');
    // Retained: it is there for an agent that subscribes after the publish.
    await eventually(async () => (await agentJson(agent.id)).policy_version === 1, 'policy version shown');
    const client = await connectAgent(agent);
    expect(await client.subscribe(agentTopic(agent.id, 'policy'))).toBe(1);
    await eventually(() => policiesReceived(client).length === 1, 'retained v1 delivered');
    expect(policiesReceived(client)[0]).toMatchObject({ policy_id: 'lab', version: 1, config: { log_level: 'info', buffer: { max_bytes: 1024 ** 3 } } });
    expect(client.received[0]!.retain).toBe(true);

    const v2 = await call('PUT', '/api/v1/policies/lab', { config: { log_level: 'debug', buffer: { max_bytes: '1GiB' } } });
    expect(v2).toMatchObject({ status: 200, body: { version: 2, changed: true, agents: 1 } });
    await eventually(() => policiesReceived(client).length === 2, 'v2 delivered live');
    expect(policiesReceived(client)[1]).toMatchObject({ policy_id: 'lab', version: 2, config: { log_level: 'debug' } });
    // The same document again: no version, nothing published.
    expect(await call('PUT', '/api/v1/policies/lab', { config: { log_level: 'debug', buffer: { max_bytes: '1GiB' } } })).toMatchObject({ status: 200, body: { version: 2, changed: false } });

    expect(await call('PUT', `/api/v1/agents/${agent.id}`, { policy_id: 'default' })).toMatchObject({ status: 200, body: { policy_id: 'default', policy_version: 1 } });
    await eventually(() => policiesReceived(client).length === 3, 'the default policy delivered after the move');
    expect(policiesReceived(client)[2]).toEqual({ policy_id: 'default', version: 1, config: {}, published_at: expect.any(String) });
    expect(policiesReceived(client)).toHaveLength(3);

    const audit = (await call('GET', '/api/v1/audit?limit=10')).body.items as Array<{ action: string; target: string; details: Record<string, unknown> }>;
    expect(audit.find((a) => a.action === 'policy.updated')?.details).toEqual({ version: 2, previous_version: 1, diff: [{ path: 'config.log_level', old: 'info', new: 'debug' }] });
    expect(audit.find((a) => a.action === 'agent.policy_assigned')?.details).toEqual({ diff: [{ path: 'policy_id', old: 'lab', new: 'default' }] });
    expect(audit.find((a) => a.action === 'policy.created')?.details).toMatchObject({ version: 1, diff: [{ path: 'log_level', new: 'info' }, { path: 'buffer.max_bytes', new: '1GiB' }] });
    expect(audit.filter((a) => a.action === 'policy.updated')).toHaveLength(1);
  });

  it('republishes every agent\'s policy when it starts again (the embedded broker forgets retained messages)', async () => {
    await call('POST', '/api/v1/policies', { id: 'lab', name: 'Lab', config: { log_level: 'warn' } });
    const a = await enroll('lab');
    const b = await enroll('default');
    await stopService();
    await startService();
    const ca = await connectAgent(a);
    const cb = await connectAgent(b);
    await ca.subscribe(agentTopic(a.id, 'policy'));
    await cb.subscribe(agentTopic(b.id, 'policy'));
    await eventually(() => policiesReceived(ca).length === 1 && policiesReceived(cb).length === 1, 'both retained policies after the restart');
    expect(policiesReceived(ca)[0]).toMatchObject({ policy_id: 'lab', version: 1, config: { log_level: 'warn' } });
    expect(policiesReceived(cb)[0]).toMatchObject({ policy_id: 'default', version: 1, config: {} });
  });
});

describe('FleetService: presence and health', () => {
  it('shows an agent online with version, backlog and sources from its status; offline when its last will fires', async () => {
    const agent = await enroll();
    expect(await agentJson(agent.id)).toMatchObject({ online: false, health: 'offline', health_reasons: ['no status received yet'], backlog: null });
    const client = await connectAgent(agent);
    await client.publish(agentTopic(agent.id, 'status'), status(agent.id, { policy: { policy_id: 'default', applied_version: 1, received_version: 1, state: 'ok', errors: [] } }), { retain: true });
    await eventually(async () => (await agentJson(agent.id)).online === true, 'online');
    expect(await agentJson(agent.id)).toMatchObject({
      online: true,
      health: 'healthy',
      health_reasons: [],
      version: '0.1.0',
      policy_id: 'default',
      policy_version: 1,
      applied_policy_version: 1,
      last_seen: new Date(clock).toISOString(),
      backlog: { count: 3, bytes: 3000, oldest_age_secs: 1.5 },
      sources: [{ id: 'adt', type: 'mllp', state: 'running', counters: { messages: 7 } }],
      uplink: { state: 'connected' },
    });
    await client.publish(agentTopic(agent.id, 'telemetry'), JSON.stringify({ agent_id: agent.id, counters: { mllp_messages: 42 }, sent_at: new Date(clock).toISOString() }));
    await eventually(async () => ((await agentJson(agent.id)).telemetry as { counters?: Record<string, number> } | null)?.counters?.mllp_messages === 42, 'telemetry shown');

    client.destroy(); // no DISCONNECT: the broker publishes the last will
    await eventually(async () => (await agentJson(agent.id)).online === false, 'offline after the last will');
    expect(await agentJson(agent.id)).toMatchObject({ health: 'offline', health_reasons: [expect.stringContaining('last will')] });
    // Written to the store (the coalesced flush), so a restart still knows.
    await eventually(async () => (await store.listAgentStatuses()).some((r) => r.agentId === agent.id && !r.online), 'offline stored');
  });

  it('marks an agent offline when its heartbeat is 3 intervals late, and online again at its next status', async () => {
    const agent = await enroll();
    const client = await connectAgent(agent);
    await client.publish(agentTopic(agent.id, 'status'), status(agent.id, { heartbeat_secs: 5 }));
    await eventually(async () => (await agentJson(agent.id)).online === true, 'online');
    clock += 14_000;
    expect((await agentJson(agent.id)).online).toBe(true);
    clock += 2_000; // 16 s > 3 × 5 s
    await eventually(async () => (await store.listAgentStatuses()).some((r) => r.agentId === agent.id && !r.online), 'the sweep stored it offline');
    expect(await agentJson(agent.id)).toMatchObject({ online: false, health: 'offline', health_reasons: [expect.stringMatching(/no status for 16 s \(heartbeat 5 s\)/)] });
    await client.publish(agentTopic(agent.id, 'status'), status(agent.id, { heartbeat_secs: 5 }));
    await eventually(async () => (await agentJson(agent.id)).online === true, 'online again');
  });

  it('is degraded, with each reason, for a full-ish buffer, a growing backlog, a failed source and a policy that failed to apply', async () => {
    const agent = await enroll();
    const client = await connectAgent(agent);
    for (const depth of [100, 200, 300]) {
      await client.publish(agentTopic(agent.id, 'status'), status(agent.id, { buffer: { depth, bytes: depth * 100, max_bytes: 1_000_000, oldest_pending_age_secs: 1, full: false } }));
      await eventually(async () => ((await agentJson(agent.id)).backlog as { count: number } | null)?.count === depth, `depth ${depth} seen`);
      clock += 1000;
    }
    expect(await agentJson(agent.id)).toMatchObject({ online: true, health: 'degraded', health_reasons: ['backlog growing: 100 → 300 messages over 2 s'] });

    await client.publish(
      agentTopic(agent.id, 'status'),
      status(agent.id, {
        buffer: { depth: 5, bytes: 850_000, max_bytes: 1_000_000, oldest_pending_age_secs: 1, full: false },
        sources: [{ id: 'lab', type: 'file_drop', state: 'failed', message: 'folder missing', counters: {} }],
        policy: { policy_id: 'default', applied_version: 1, received_version: 2, state: 'partial', errors: [{ path: 'sources[0].listen', message: 'port in use' }] },
      }),
    );
    await eventually(async () => ((await agentJson(agent.id)).health_reasons as string[]).length === 3, 'three reasons');
    expect((await agentJson(agent.id)).health_reasons).toEqual([
      'buffer at 85% of max_bytes',
      'source lab failed: folder missing',
      'policy version 2 applied partially: sources[0].listen: port in use',
    ]);
  });
});

describe('FleetService: commands', () => {
  it('round trip: pending, then the agent\'s result; a redelivered result changes nothing; audited', async () => {
    const agent = await enroll();
    const client = await connectAgent(agent);
    await client.subscribe(agentTopic(agent.id, 'commands'));
    let answered = 0;
    client.client.on('message', (topic, payload) => {
      if (!topic.endsWith('/commands')) return;
      const cmd = JSON.parse(payload.toString('utf8')) as { id: string; type: string };
      answered++;
      const result = JSON.stringify({ id: cmd.id, status: 'succeeded', result: { pong_at: 'then' }, finished_at: new Date(clock).toISOString() });
      // Sent twice: a QoS 1 redelivery of the result must not count twice.
      void client.publish(agentTopic(agent.id, 'command-results'), result).then(() => client.publish(agentTopic(agent.id, 'command-results'), JSON.stringify({ ...JSON.parse(result), status: 'failed' })));
    });
    await expect(call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'ping' }, viewerToken)).resolves.toMatchObject({ status: 403 });
    const sent = await call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'ping' }, operatorToken);
    expect(sent).toMatchObject({ status: 201, body: { id: expect.any(String), type: 'ping', status: 'pending', expires_at: new Date(clock + 300_000).toISOString() } });
    const id = sent.body.id as string;
    await eventually(async () => (await call('GET', `/api/v1/agents/${agent.id}/commands/${id}`, undefined, viewerToken)).body.status !== 'pending', 'the result arrived');
    await eventually(async () => (await call('GET', '/api/v1/audit?limit=5')).body.items !== undefined && ((await call('GET', '/api/v1/audit?limit=5')).body.items as Array<{ action: string }>).some((a) => a.action === 'command.finished'), 'result audited');
    expect((await call('GET', `/api/v1/agents/${agent.id}/commands/${id}`, undefined, viewerToken)).body).toMatchObject({ id, type: 'ping', status: 'succeeded', result: { pong_at: 'then' }, error: null });
    expect(answered).toBe(1);
    const audit = (await call('GET', '/api/v1/audit?limit=5')).body.items as Array<{ action: string; actor: string; details: Record<string, unknown> }>;
    const operatorId = (await store.verifyApiToken(operatorToken))!.tokenId;
    expect(audit.find((a) => a.action === 'command.issued')).toMatchObject({ actor: `token:${operatorId}`, details: { command_id: id, type: 'ping' } });
    expect(audit.filter((a) => a.action === 'command.finished')).toHaveLength(1);
    const list = await call('GET', `/api/v1/agents/${agent.id}/commands`, undefined, viewerToken);
    expect((list.body.items as Array<{ id: string }>).map((c) => c.id)).toEqual([id]);
  });

  it('refuses bad args with every problem (422), unknown types (400), unknown agents (404); set-log-level carries its level', async () => {
    const agent = await enroll();
    const bad = await call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'set-log-level', args: { level: 'loud', extra: 1 } }, operatorToken);
    expect(bad.status).toBe(422);
    expect(bad.body.error).toMatchObject({ code: 'command_args_invalid', problems: expect.arrayContaining([expect.objectContaining({ path: 'args.level' }), expect.objectContaining({ path: 'args' })]) });
    expect((await call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'format-disk' }, operatorToken)).status).toBe(400);
    expect((await call('POST', '/api/v1/agents/nope/commands', { type: 'ping' }, operatorToken)).status).toBe(404);
    const client = await connectAgent(agent);
    await client.subscribe(agentTopic(agent.id, 'commands'));
    const ok = await call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'set-log-level', args: { level: 'debug' }, expires_in_secs: 30 }, operatorToken);
    expect(ok).toMatchObject({ status: 201, body: { args: { level: 'debug' } } });
    await eventually(() => client.received.some((m) => m.topic.endsWith('/commands')), 'command delivered');
    const msg = JSON.parse(client.received.find((m) => m.topic.endsWith('/commands'))!.payload) as Record<string, unknown>;
    expect(msg).toEqual({ id: ok.body.id, type: 'set-log-level', args: { level: 'debug' }, issued_at: new Date(clock).toISOString(), expires_at: new Date(clock + 30_000).toISOString() });
  });

  it('the sweep marks an unanswered command expired after expires_at', async () => {
    const agent = await enroll();
    const sent = await call('POST', `/api/v1/agents/${agent.id}/commands`, { type: 'flush', expires_in_secs: 5 }, operatorToken);
    const path = `/api/v1/agents/${agent.id}/commands/${sent.body.id as string}`;
    clock += 4_999;
    await service.sweep();
    expect((await call('GET', path, undefined, viewerToken)).body.status).toBe('pending');
    clock += 1;
    await eventually(async () => (await call('GET', path, undefined, viewerToken)).body.status === 'expired', 'expired');
    expect((await call('GET', path, undefined, viewerToken)).body).toMatchObject({ status: 'expired', result: null, error: { code: 'expired' }, finished_at: new Date(clock).toISOString() });
    const metrics = await (await app.request('/metrics')).text();
    expect(metrics).toContain('ferry_cp_fleet_commands{status="expired"} 1');
    expect(metrics).toContain('ferry_cp_fleet_commands{status="pending"} 0');
    expect(metrics).toContain('ferry_cp_fleet_agents{state="offline"} 1');
    expect(metrics).toContain('ferry_cp_fleet_agents_health{health="healthy"} 0');
  });
});

describe('FleetService: rollout', () => {
  it('counts agents on the latest version, behind, failed (with errors) and offline', async () => {
    await call('POST', '/api/v1/policies', { id: 'lab', name: 'Lab', config: { log_level: 'info' } });
    await call('PUT', '/api/v1/policies/lab', { config: { log_level: 'debug' } });
    const [onLatest, behind, failed, silent] = [await enroll('lab', 'a'), await enroll('lab', 'b'), await enroll('lab', 'c'), await enroll('lab', 'd')];
    await enroll('default', 'elsewhere');
    const apply = (applied: number, received: number, state: 'ok' | 'partial' | 'failed', errors: { path: string; message: string }[] = []) => ({ policy: { policy_id: 'lab', applied_version: applied, received_version: received, state, errors } });
    for (const [agent, extra] of [
      [onLatest, apply(2, 2, 'ok')],
      [behind, apply(1, 1, 'ok')],
      [failed, apply(1, 2, 'failed', [{ path: 'sources[0].path', message: 'folder /srv/missing does not exist' }])],
    ] as const) {
      const c = await connectAgent(agent);
      await c.publish(agentTopic(agent.id, 'status'), status(agent.id, extra));
    }
    await eventually(async () => (await call('GET', '/api/v1/policies/lab/rollout', undefined, viewerToken)).body.applied_latest === 1, 'statuses in');
    await eventually(async () => ((await call('GET', '/api/v1/policies/lab/rollout', undefined, viewerToken)).body.failed as unknown[]).length === 1, 'failure in');
    const r = await call('GET', '/api/v1/policies/lab/rollout', undefined, viewerToken);
    expect(r).toEqual({
      status: 200,
      body: {
        policy_id: 'lab',
        latest_version: 2,
        agents_total: 4,
        applied_latest: 1,
        behind: expect.arrayContaining([
          { agent_id: behind.id, applied_version: 1, online: true },
          { agent_id: silent.id, applied_version: null, online: false },
        ]),
        failed: [{ agent_id: failed.id, version: 2, applied_version: 1, state: 'failed', errors: [{ path: 'sources[0].path', message: 'folder /srv/missing does not exist' }] }],
        offline: [{ agent_id: silent.id, applied_version: null }],
      },
    });
    expect((r.body.behind as unknown[]).length).toBe(2);
    expect((await call('GET', '/api/v1/policies/nope/rollout', undefined, viewerToken)).status).toBe(404);
  });
});
