// The policy routes on their own (no fleet service): validation with every problem by path, roles,
// versions, assignment. Publishing over MQTT is covered in control-plane/fleet/service.test.ts.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { SqliteMessageStore } from '../store/index.js';
import { createApp } from './index.js';

let dir: string;
let store: SqliteMessageStore;
let app: ReturnType<typeof createApp>;
let clock: number;
const tokens: Record<'admin' | 'operator' | 'viewer', string> = { admin: '', operator: '', viewer: '' };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-policies-'));
  clock = 1_764_000_000_000;
  store = await SqliteMessageStore.open({ dataDir: dir, now: () => clock });
  for (const role of ['admin', 'operator', 'viewer'] as const) tokens[role] = (await store.createApiToken({ name: role, role })).token;
  app = createApp({ store, log: createLogger('silent'), now: () => clock });
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, json?: unknown, role: keyof typeof tokens = 'admin'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await app.request(`http://cp.example${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[role]}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('HTTP API: policies', () => {
  it('rejects a bad policy with 422 policy_invalid listing every problem with its path, and stores nothing', async () => {
    const bad = await call('POST', '/api/v1/policies', {
      id: 'lab',
      name: 'Lab',
      config: {
        log_level: 'loud',
        buffer: { max_bytes: '10 parsecs' },
        sources: [
          { id: 'adt', type: 'mllp', listen: 'nowhere' },
          { id: 'adt', type: 'file_drop', path: '/srv/in' },
          { id: 'x', type: 'carrier-pigeon' },
        ],
        colour: 'red',
      },
    });
    expect(bad.status).toBe(422);
    const error = bad.body.error as { code: string; message: string; problems: { path: string; message: string }[] };
    expect(error.code).toBe('policy_invalid');
    expect(error.problems.map((p) => p.path).sort()).toEqual(['(root)', 'buffer.max_bytes', 'log_level', 'sources[0].listen', 'sources[1].error_dir', 'sources[2].type'].sort());
    expect(error.message).toContain('sources[0].listen');
    expect((await call('GET', '/api/v1/policies/lab', undefined, 'viewer')).status).toBe(404);
    // PUT checks the same way and leaves the latest version alone.
    expect((await call('POST', '/api/v1/policies', { id: 'lab', name: 'Lab', config: { log_level: 'info' } })).status).toBe(201);
    const badPut = await call('PUT', '/api/v1/policies/lab', { config: { uplink: { retry_initial_delay_secs: 60, retry_max_delay_secs: 1 } } });
    expect(badPut).toMatchObject({ status: 422, body: { error: { code: 'policy_invalid', problems: [{ path: 'uplink.retry_initial_delay_secs', message: expect.any(String) }] } } });
    expect((await call('GET', '/api/v1/policies/lab', undefined, 'viewer')).body).toMatchObject({ version: 1, config: { log_level: 'info' } });
  });

  it('creates, lists, versions and reads back policies; roles: viewer reads, admin changes', async () => {
    const sources = [{ id: 'adt', type: 'mllp', listen: '0.0.0.0:2575' }];
    expect((await call('POST', '/api/v1/policies', { name: 'x', config: {} }, 'operator')).status).toBe(403);
    const made = await call('POST', '/api/v1/policies', { name: 'Wards', config: { sources } });
    expect(made).toMatchObject({ status: 201, body: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'Wards', version: 1, config: { sources }, created_at: new Date(clock).toISOString() } });
    const id = made.body.id as string;
    expect((await call('POST', '/api/v1/policies', { id, name: 'again', config: {} })).status).toBe(409);
    expect((await call('POST', '/api/v1/policies', { id: 'no spaces', name: 'x', config: {} })).status).toBe(400);
    expect((await call('POST', '/api/v1/policies', { name: 'x', config: 'sources: []' })).status).toBe(400);
    clock += 1000;
    expect((await call('PUT', `/api/v1/policies/${id}`, { config: { sources, log_level: 'debug' } }, 'operator')).status).toBe(403);
    expect(await call('PUT', `/api/v1/policies/${id}`, { config: { sources, log_level: 'debug' }, name: 'Wards 2' })).toMatchObject({ status: 200, body: { version: 2, name: 'Wards 2', changed: true, updated_at: new Date(clock).toISOString() } });
    expect((await call('PUT', `/api/v1/policies/${id}`, {})).status).toBe(400);
    expect((await call('PUT', '/api/v1/policies/nope', { config: {} })).status).toBe(404);
    const list = await call('GET', '/api/v1/policies', undefined, 'viewer');
    expect(list.body.items).toEqual([
      { id: 'default', name: expect.any(String), latest_version: 1, created_at: expect.any(String), updated_at: expect.any(String) },
      { id, name: 'Wards 2', latest_version: 2, created_at: new Date(clock - 1000).toISOString(), updated_at: new Date(clock).toISOString() },
    ]);
    expect((await call('GET', `/api/v1/policies/${id}/versions/1`, undefined, 'viewer')).body).toEqual({ policy_id: id, version: 1, config: { sources }, created_at: new Date(clock - 1000).toISOString(), created_by: expect.stringMatching(/^token:/) });
    expect((await call('GET', `/api/v1/policies/${id}/versions/3`, undefined, 'viewer')).status).toBe(404);
    expect((await call('GET', `/api/v1/policies/${id}/versions/two`, undefined, 'viewer')).status).toBe(404);
    // Without a fleet service the rollout cannot be known.
    expect((await call('GET', `/api/v1/policies/${id}/rollout`, undefined, 'viewer')).status).toBe(503);
  });

  it('assigns an agent to an existing policy (404 for an unknown one, 403 below admin); enrollment tokens must name an existing policy', async () => {
    const a = await store.createAgent({ name: 'a', policyId: 'default' });
    await call('POST', '/api/v1/policies', { id: 'lab', name: 'Lab', config: {} });
    expect(await call('PUT', `/api/v1/agents/${a.id}`, { policy_id: 'nope' })).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await call('PUT', `/api/v1/agents/${a.id}`, { policy_id: 'lab' }, 'operator')).status).toBe(403);
    expect((await call('PUT', '/api/v1/agents/nope', { policy_id: 'lab' })).status).toBe(404);
    expect(await call('PUT', `/api/v1/agents/${a.id}`, { policy_id: 'lab' })).toMatchObject({ status: 200, body: { id: a.id, policy_id: 'lab', policy_version: 1, online: false, health: 'offline' } });
    expect((await store.getAgent(a.id))?.policyId).toBe('lab');
    expect((await call('POST', '/api/v1/enrollment-tokens', { policy_id: 'nope' })).status).toBe(404);
    expect((await call('POST', '/api/v1/enrollment-tokens', { policy_id: 'lab' })).status).toBe(201);
  });
});
