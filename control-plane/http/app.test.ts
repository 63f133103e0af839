import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sampleEnvelopes } from '../../test/helpers/envelopes.js';
import { createLogger } from '../log.js';
import { SqliteMessageStore } from '../store/index.js';
import { ROUTES, createApp } from './index.js';

let dir: string;
let store: SqliteMessageStore;
let app: ReturnType<typeof createApp>;
let logText: string;
let clock: number;
let connected: Map<string, { bufferId: string }>;
const tokens: Record<'admin' | 'operator' | 'viewer', string> = { admin: '', operator: '', viewer: '' };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-http-'));
  clock = 1_764_000_000_000;
  store = await SqliteMessageStore.open({ dataDir: dir, now: () => clock });
  for (const role of ['admin', 'operator', 'viewer'] as const) tokens[role] = (await store.createApiToken({ name: role, role })).token;
  logText = '';
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      logText += chunk.toString('utf8');
      done();
    },
  });
  connected = new Map();
  app = createApp({
    store,
    log: createLogger('debug', sink),
    now: () => clock,
    ingest: { connectedAgents: () => connected, address: () => ({ host: '0.0.0.0', port: 50099 }), health: () => ({ state: 'running', message: 'ok' }) },
  });
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function call(method: string, path: string, options: { token?: string | null; json?: unknown; body?: string; contentType?: string; host?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? tokens.admin : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined = options.body;
  if (options.json !== undefined) body = JSON.stringify(options.json);
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  if (options.host) headers.host = options.host;
  return Promise.resolve(app.request(`http://${options.host ?? 'cp.example'}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) }));
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  expect({ status: res.status, body: (await res.json()) as unknown }).toMatchObject({ status, body: { error: { code, message: expect.any(String) } } });
}

async function enrollmentToken(body: unknown = {}): Promise<{ token: string; id: string }> {
  const res = await call('POST', '/api/v1/enrollment-tokens', { json: body });
  expect(res.status).toBe(201);
  return (await res.json()) as { token: string; id: string };
}

async function enroll(token: string, name?: string): Promise<Response> {
  return call('POST', '/api/v1/agents/enroll', { token: null, json: { token, ...(name ? { name } : {}) } });
}

describe('HTTP API: enrollment', () => {
  it('makes a token with defaults, enrolls an agent once with it, and answers agent_id, secret, grpc_target', async () => {
    const res = await call('POST', '/api/v1/enrollment-tokens', { json: {} });
    expect(res.status).toBe(201);
    const t = (await res.json()) as Record<string, unknown>;
    expect(t).toEqual({ token: expect.stringMatching(/^ferry_enroll_/), id: expect.any(String), policy_id: 'default', expires_at: new Date(clock + 86_400_000).toISOString(), max_uses: 1 });
    const e = await enroll(t.token as string, 'ward-7');
    expect(e.status).toBe(201);
    const creds = (await e.json()) as { agent_id: string; secret: string; grpc_target: string };
    expect(creds).toEqual({ agent_id: expect.any(String), secret: expect.any(String), grpc_target: 'cp.example:50099' });
    expect(await store.verifyAgentSecret(creds.agent_id, creds.secret)).toMatchObject({ status: 'ok', agent: { name: 'ward-7', policyId: 'default' } });
    await expectError(await enroll(t.token as string), 410, 'enrollment_token_used_up');
    expect(logText).not.toContain(creds.secret);
    expect(logText).not.toContain(t.token as string);
  });

  it('takes policy, expiry and uses; refuses expired, revoked and unknown tokens with their codes', async () => {
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { json: { policy_id: 'lab' } }), 404, 'not_found'); // no such policy yet
    expect((await call('POST', '/api/v1/policies', { json: { id: 'lab', name: 'Lab', config: {} } })).status).toBe(201);
    const t = await enrollmentToken({ policy_id: 'lab', expires_in_secs: 60, max_uses: 2 });
    expect((await enroll(t.token)).status).toBe(201);
    clock += 60_000;
    await expectError(await enroll(t.token), 410, 'enrollment_token_expired');
    const r = await enrollmentToken();
    expect((await call('DELETE', `/api/v1/enrollment-tokens/${r.id}`)).status).toBe(204);
    await expectError(await enroll(r.token), 410, 'enrollment_token_revoked');
    await expectError(await enroll('ferry_enroll_made-up'), 401, 'enrollment_token_invalid');
    await expectError(await call('DELETE', '/api/v1/enrollment-tokens/nope'), 404, 'not_found');
    const host = await call('POST', '/api/v1/agents/enroll', { token: null, json: { token: (await enrollmentToken()).token }, host: '10.1.2.3:8080' });
    expect(((await host.json()) as { grpc_target: string }).grpc_target).toBe('10.1.2.3:50099');
  });
});

describe('HTTP API: auth and errors', () => {
  it('401 without or with a wrong token, 403 for a role below the route', async () => {
    const noToken = await call('GET', '/api/v1/agents', { token: null });
    expect(noToken.headers.get('www-authenticate')).toContain('Bearer');
    await expectError(noToken, 401, 'unauthenticated');
    await expectError(await call('GET', '/api/v1/agents', { token: 'ferry_api_wrong' }), 401, 'unauthenticated');
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { token: tokens.viewer, json: {} }), 403, 'forbidden');
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { token: tokens.operator, json: {} }), 403, 'forbidden');
    await expectError(await call('GET', '/api/v1/audit', { token: tokens.operator }), 403, 'forbidden');
    await expectError(await call('GET', '/api/v1/messages/1/payload', { token: tokens.viewer }), 403, 'forbidden');
    expect((await call('GET', '/api/v1/agents', { token: tokens.viewer })).status).toBe(200);
    expect((await call('GET', '/api/v1/messages', { token: tokens.viewer })).status).toBe(200);
  });

  it('400 for bad JSON, unknown fields and bad values; 415 for non-JSON; 413 over 1 MiB; 404 for unknown routes', async () => {
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { body: '{"max_uses":' }), 400, 'bad_json');
    const unknown = await call('POST', '/api/v1/enrollment-tokens', { json: { max_uses: 1, colour: 'red' } });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('colour') });
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { json: { max_uses: 0 } }), 400, 'invalid_request');
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { json: { expires_in_secs: '60' } }), 400, 'invalid_request');
    await expectError(await call('POST', '/api/v1/agents/enroll', { token: null, json: {} }), 400, 'invalid_request');
    await expectError(await call('POST', '/api/v1/enrollment-tokens', { body: 'max_uses=1', contentType: 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    await expectError(await call('POST', '/api/v1/agents/enroll', { token: null, json: { token: 'x'.repeat(2 * 1024 * 1024) } }), 413, 'payload_too_large');
    await expectError(await call('GET', '/api/v1/nothing-here'), 404, 'not_found');
  });

  it('400 for bad message filters, each naming the parameter', async () => {
    for (const q of ['limit=0', 'limit=1001', 'limit=ten', 'since=yesterday', 'until=2026-01-01', 'type=ADT^A01^X', 'cursor=bogus', 'colour=red', 'since=2000&until=1000']) {
      const res = await call('GET', `/api/v1/messages?${q}`, { token: tokens.viewer });
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code, q).toBe('invalid_query');
    }
  });
});

describe('HTTP API: agents, messages, payloads, audit', () => {
  async function enrolledAgent(name: string): Promise<string> {
    return ((await (await enroll((await enrollmentToken()).token, name)).json()) as { agent_id: string }).agent_id;
  }

  it('lists agents with stream state, committed seq per buffer and totals; revokes (409 twice)', async () => {
    const a = await enrolledAgent('a');
    clock += 1; // listed oldest first
    const b = await enrolledAgent('b');
    const envelopes = sampleEnvelopes(1, 5);
    await store.ingestBatch(a, 'buf-1', envelopes);
    connected.set(a, { bufferId: 'buf-1' });
    clock += 5000;
    const list = (await (await call('GET', '/api/v1/agents', { token: tokens.viewer })).json()) as { items: Array<Record<string, unknown>> };
    expect(list.items).toHaveLength(2);
    expect(list.items[0]).toMatchObject({
      id: a,
      name: 'a',
      policy_id: 'default',
      online: false,
      stream_connected: true,
      revoked: false,
      last_seen: new Date(clock).toISOString(),
      committed_seq: { 'buf-1': 5 },
      messages_received: 5,
      bytes_received: envelopes.reduce((n, e) => n + e.payload.length, 0),
    });
    expect(list.items[1]).toMatchObject({ id: b, stream_connected: false, last_seen: null, committed_seq: {}, messages_received: 0 });
    const one = await call('GET', `/api/v1/agents/${a}`, { token: tokens.viewer });
    expect(((await one.json()) as { id: string }).id).toBe(a);
    await expectError(await call('GET', '/api/v1/agents/nope', { token: tokens.viewer }), 404, 'not_found');
    await expectError(await call('POST', `/api/v1/agents/${a}/revoke`, { token: tokens.operator }), 403, 'forbidden');
    const revoked = await call('POST', `/api/v1/agents/${a}/revoke`);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { revoked: boolean }).revoked).toBe(true);
    await expectError(await call('POST', `/api/v1/agents/${a}/revoke`), 409, 'conflict');
    await expectError(await call('POST', '/api/v1/agents/nope/revoke'), 404, 'not_found');
  });

  it('lists message metadata with filters and cursors, serves exact payload bytes, and audits every read', async () => {
    const a = await enrolledAgent('a');
    const envelopes = sampleEnvelopes(1, 7, { sources: ['adt', 'lab'] });
    await store.ingestBatch(a, 'buf-1', envelopes);
    const seen: Array<Record<string, unknown>> = [];
    let cursor: string | null = null;
    do {
      const res = await call('GET', `/api/v1/messages?agent=${a}&limit=3${cursor ? `&cursor=${cursor}` : ''}`, { token: tokens.viewer });
      const page = (await res.json()) as { items: Array<Record<string, unknown>>; next_cursor: string | null };
      seen.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const first = envelopes[0]!;
    expect(seen[0]).toEqual({
      id: expect.any(String),
      agent_id: a,
      source_id: first.sourceId,
      seq: 1,
      control_id: first.metadata.controlId,
      message_type: `${first.metadata.messageType}^${first.metadata.triggerEvent}`,
      received_at: new Date(first.receivedAtMs).toISOString(),
      size: first.payload.length,
      sha256: first.sha256.toString('hex'),
    });
    const lab = (await (await call('GET', '/api/v1/messages?source=lab', { token: tokens.viewer })).json()) as { items: Array<{ source_id: string }> };
    expect(lab.items.length).toBe(envelopes.filter((e) => e.sourceId === 'lab').length);
    const since = (await (await call('GET', `/api/v1/messages?since=${new Date(envelopes[3]!.receivedAtMs).toISOString()}`, { token: tokens.viewer })).json()) as { items: Array<{ seq: number }> };
    expect(since.items.map((m) => m.seq)).toEqual(envelopes.filter((e) => e.receivedAtMs >= envelopes[3]!.receivedAtMs).map((e) => e.seq));

    const payload = await call('GET', `/api/v1/messages/${seen[0]!.id as string}/payload`, { token: tokens.operator });
    expect(payload.status).toBe(200);
    expect(payload.headers.get('content-type')).toBe('application/hl7-v2');
    expect(Buffer.from(await payload.arrayBuffer()).equals(first.payload)).toBe(true);
    await expectError(await call('GET', '/api/v1/messages/999999/payload', { token: tokens.operator }), 404, 'not_found');
    const audit = (await (await call('GET', '/api/v1/audit?limit=1')).json()) as { items: Array<Record<string, unknown>> };
    const operatorId = (await store.verifyApiToken(tokens.operator))!.tokenId;
    expect(audit.items[0]).toMatchObject({ actor: `token:${operatorId}`, action: 'message.payload.read', target: `message:${seen[0]!.id as string}`, at: new Date(clock).toISOString() });
    expect(logText).not.toContain(first.payload.subarray(0, 40).toString('latin1'));
  });
});

describe('HTTP API: health, metrics, OpenAPI', () => {
  it('answers /livez, /readyz and /metrics with request counts by route and status', async () => {
    expect((await call('GET', '/livez', { token: null })).status).toBe(200);
    expect(await (await call('GET', '/readyz', { token: null })).json()).toEqual({ status: 'ready' });
    await call('GET', '/api/v1/agents', { token: null });
    const text = await (await call('GET', '/metrics', { token: null })).text();
    expect(text).toMatch(/ferry_cp_http_requests_total\{method="GET",route="\/api\/v1\/agents",status="401"\} 1/);
  });

  it('is not ready while the gRPC ingest does not run', async () => {
    const down = createApp({ store, log: createLogger('silent'), ingest: { connectedAgents: () => new Map(), address: () => undefined, health: () => ({ state: 'stopping', message: 'draining' }) } });
    const res = await down.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'not_ready', reasons: [expect.stringContaining('stopping')] });
  });

  it('documents every route, and its schemas validate real responses', async () => {
    const doc = (await (await call('GET', '/openapi.json', { token: null })).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>; parameters?: Array<{ name: string }> }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    for (const r of ROUTES) expect(doc.paths[r.path]?.[r.method], `${r.method} ${r.path}`).toBeDefined();
    for (const p of ['/livez', '/readyz', '/metrics', '/openapi.json']) expect(doc.paths[p]).toBeDefined();
    expect(doc.paths['/api/v1/messages']!.get!.parameters!.map((p) => p.name)).toEqual(['agent', 'source', 'type', 'control_id', 'since', 'until', 'limit', 'cursor']);

    const schemaOf = (path: string, method: string, status: string) => z.fromJSONSchema(doc.paths[path]![method]!.responses[status]!.content!['application/json']!.schema as never);
    const t = await enrollmentToken();
    await store.ingestBatch(((await (await enroll(t.token)).json()) as { agent_id: string }).agent_id, 'b', sampleEnvelopes(1, 2));
    const agents = await (await call('GET', '/api/v1/agents')).json();
    expect(schemaOf('/api/v1/agents', 'get', '200').safeParse(agents).success).toBe(true);
    const messages = await (await call('GET', '/api/v1/messages')).json();
    expect(schemaOf('/api/v1/messages', 'get', '200').safeParse(messages).success).toBe(true);
    expect(schemaOf('/api/v1/messages', 'get', '200').safeParse({ items: [{ id: 1 }], next_cursor: null }).success).toBe(false);
    const err = await (await call('GET', '/api/v1/agents', { token: null })).json();
    expect(schemaOf('/api/v1/agents', 'get', '401').safeParse(err).success).toBe(true);
  });
});

describe('HTTP API: API tokens', () => {
  it('an admin mints tokens with a role; each role gets exactly its routes; a revoked token is refused', async () => {
    const mint = async (role: string): Promise<{ token: string; id: string; role: string }> => {
      const res = await call('POST', '/api/v1/api-tokens', { json: { name: `${role}-tool`, role } });
      expect(res.status).toBe(201);
      return (await res.json()) as { token: string; id: string; role: string };
    };
    const viewer = await mint('viewer');
    const operator = await mint('operator');
    expect(viewer).toEqual({ token: expect.any(String), id: expect.any(String), name: 'viewer-tool', role: 'viewer' });
    // A viewer lists metadata, but neither reads payloads nor manages tokens.
    expect((await call('GET', '/api/v1/messages', { token: viewer.token })).status).toBe(200);
    await expectError(await call('GET', '/api/v1/messages/1/payload', { token: viewer.token }), 403, 'forbidden');
    await expectError(await call('POST', '/api/v1/api-tokens', { token: viewer.token, json: { name: 'x', role: 'admin' } }), 403, 'forbidden');
    // An operator may read payloads (404 here: no such message), not mint tokens.
    await expectError(await call('GET', '/api/v1/messages/1/payload', { token: operator.token }), 404, 'not_found');
    await expectError(await call('POST', '/api/v1/api-tokens', { token: operator.token, json: { name: 'x', role: 'viewer' } }), 403, 'forbidden');
    // Bad role, unknown field.
    await expectError(await call('POST', '/api/v1/api-tokens', { json: { name: 'x', role: 'root' } }), 400, 'invalid_request');
    await expectError(await call('POST', '/api/v1/api-tokens', { json: { name: 'x', role: 'viewer', extra: 1 } }), 400, 'invalid_request');
    // Revoked: refused from the next request on; revoking an unknown id is 404.
    expect((await call('DELETE', `/api/v1/api-tokens/${viewer.id}`)).status).toBe(204);
    await expectError(await call('GET', '/api/v1/messages', { token: viewer.token }), 401, 'unauthenticated');
    await expectError(await call('DELETE', '/api/v1/api-tokens/no-such-id'), 404, 'not_found');
    // Both changes are audited, and no token appears in the audit log or the logs.
    const audit = (await (await call('GET', '/api/v1/audit')).json()) as { items: { action: string }[] };
    expect(audit.items.map((i) => i.action)).toEqual(expect.arrayContaining(['api_token.created', 'api_token.revoked']));
    expect(JSON.stringify(audit)).not.toContain(viewer.token);
    expect(logText).not.toContain(viewer.token);
    expect(logText).not.toContain(operator.token);
  });
});
