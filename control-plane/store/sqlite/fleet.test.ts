import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STORE_FILE, SqliteMessageStore, type AgentStatusRecord } from '../index.js';
import { close, exec, get, openDatabase } from './sqlite.js';

let dir: string;
let store: SqliteMessageStore | undefined;
let clock: number;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-fleet-store-'));
  clock = 1_764_000_000_000;
});

afterEach(async () => {
  await store?.close();
  store = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<SqliteMessageStore> {
  await store?.close();
  store = await SqliteMessageStore.open({ dataDir: dir, now: () => clock });
  return store;
}

describe('SqliteMessageStore: policies', () => {
  it('has the built-in default policy (version 1, sets nothing) from the first open, and only once', async () => {
    let s = await open();
    expect(await s.listPolicies()).toEqual([{ id: 'default', name: expect.any(String), latestVersion: 1, createdAt: clock, createdBy: 'system', updatedAt: clock }]);
    expect(await s.getPolicyVersion('default')).toEqual({ policyId: 'default', version: 1, config: {}, createdBy: 'system', createdAt: clock });
    clock += 1000;
    s = await open();
    expect((await s.listPolicies()).map((p) => [p.id, p.latestVersion, p.createdAt])).toEqual([['default', 1, clock - 1000]]);
  });

  it('creates, versions only real changes, renames, keeps every version, and survives a reopen', async () => {
    let s = await open();
    const made = await s.createPolicy({ id: 'lab', name: 'Lab', config: { log_level: 'info' }, createdBy: 'token:a' });
    expect(made).toEqual({
      policy: { id: 'lab', name: 'Lab', latestVersion: 1, createdAt: clock, createdBy: 'token:a', updatedAt: clock },
      version: { policyId: 'lab', version: 1, config: { log_level: 'info' }, createdBy: 'token:a', createdAt: clock },
    });
    await expect(s.createPolicy({ id: 'lab', name: 'Again', config: {}, createdBy: 'token:a' })).rejects.toMatchObject({ code: 'policy_exists' });
    await expect(s.createPolicy({ id: 'bad id!', name: 'x', config: {}, createdBy: 'token:a' })).rejects.toMatchObject({ code: 'query_invalid' });
    const uuid = await s.createPolicy({ name: 'No id', config: {}, createdBy: 'token:a' });
    expect(uuid.policy.id).toMatch(/^[0-9a-f-]{36}$/);

    clock += 1000;
    const v2 = await s.updatePolicy('lab', { config: { log_level: 'debug' }, updatedBy: 'token:b' });
    expect(v2).toMatchObject({ previous: { version: 1, config: { log_level: 'info' } }, current: { version: 2, config: { log_level: 'debug' }, createdBy: 'token:b' }, policy: { latestVersion: 2, updatedAt: clock } });
    // The same document again: no new version.
    const same = await s.updatePolicy('lab', { config: { log_level: 'debug' }, updatedBy: 'token:b' });
    expect(same?.current.version).toBe(2);
    expect(same?.current).toBe(same?.previous);
    const renamed = await s.updatePolicy('lab', { name: 'Laboratory', updatedBy: 'token:b' });
    expect(renamed).toMatchObject({ previousName: 'Lab', policy: { name: 'Laboratory', latestVersion: 2 } });
    expect(await s.updatePolicy('nope', { config: {}, updatedBy: 'x' })).toBeUndefined();

    s = await open();
    expect(await s.getPolicy('lab')).toMatchObject({ name: 'Laboratory', latestVersion: 2 });
    expect((await s.getPolicyVersion('lab', 1))?.config).toEqual({ log_level: 'info' });
    expect((await s.getPolicyVersion('lab'))?.config).toEqual({ log_level: 'debug' });
    expect(await s.getPolicyVersion('lab', 3)).toBeUndefined();
    expect(await s.getPolicyVersion('nope')).toBeUndefined();
  });

  it('moves an agent to an existing policy only', async () => {
    const s = await open();
    const a = await s.createAgent({ name: 'a', policyId: 'default' });
    await s.createPolicy({ id: 'lab', name: 'Lab', config: {}, createdBy: 'x' });
    expect(await s.setAgentPolicy(a.id, 'lab')).toBe('default');
    expect((await s.getAgent(a.id))?.policyId).toBe('lab');
    await expect(s.setAgentPolicy(a.id, 'nope')).rejects.toMatchObject({ code: 'policy_unknown' });
    expect((await s.getAgent(a.id))?.policyId).toBe('lab');
    expect(await s.setAgentPolicy('no-agent', 'lab')).toBeUndefined();
  });
});

describe('SqliteMessageStore: agent status', () => {
  it('upserts many statuses in one call and reads them back after a reopen', async () => {
    let s = await open();
    const records: AgentStatusRecord[] = Array.from({ length: 450 }, (_, i) => ({
      agentId: `agent-${i}`,
      status: { agent_id: `agent-${i}`, online: true, sent_at: 'x' },
      receivedAt: clock + i,
      online: true,
      appliedPolicyVersion: i % 3 === 0 ? null : 2,
      backlogSamples: [{ at: clock, depth: i, bytes: i * 10 }],
    }));
    await s.saveAgentStatuses(records);
    await s.saveAgentStatuses([{ ...records[7]!, online: false, receivedAt: clock + 9999, status: { agent_id: 'agent-7', online: false, reason: 'lost', sent_at: 'y' } }]);
    s = await open();
    const back = new Map((await s.listAgentStatuses()).map((r) => [r.agentId, r]));
    expect(back.size).toBe(450);
    expect(back.get('agent-3')).toEqual(records[3]);
    expect(back.get('agent-7')).toEqual({ ...records[7]!, online: false, receivedAt: clock + 9999, status: { agent_id: 'agent-7', online: false, reason: 'lost', sent_at: 'y' } });
  });
});

describe('SqliteMessageStore: commands', () => {
  it('creates pending, finishes once, expires only pending past expiry, lets a late answer replace a silent expiry, pages newest first', async () => {
    const s = await open();
    const c1 = await s.createCommand({ agentId: 'a', type: 'ping', args: {}, issuedBy: 'token:o', expiresInSecs: 60 });
    expect(c1).toMatchObject({ agentId: 'a', type: 'ping', status: 'pending', issuedAt: clock, expiresAt: clock + 60_000, result: null, finishedAt: null });
    const c2 = await s.createCommand({ agentId: 'a', type: 'set-log-level', args: { level: 'debug' }, issuedBy: 'token:o', expiresInSecs: 10 });
    const c3 = await s.createCommand({ agentId: 'a', type: 'flush', args: {}, issuedBy: 'token:o', expiresInSecs: 10 });
    await expect(s.createCommand({ agentId: 'a', type: 'ping', args: {}, issuedBy: 'x', expiresInSecs: 0 })).rejects.toMatchObject({ code: 'query_invalid' });

    clock += 1;
    expect(await s.finishCommand('b', c1.id, { status: 'succeeded', result: {} })).toBeUndefined(); // another agent's answer
    expect(await s.finishCommand('a', c1.id, { status: 'succeeded', result: { result: { pong_at: 'now' } } })).toMatchObject({ status: 'succeeded', finishedAt: clock, result: { result: { pong_at: 'now' } } });
    expect(await s.finishCommand('a', c1.id, { status: 'failed', result: {} })).toBeUndefined(); // redelivered
    expect((await s.getCommand('a', c1.id))?.status).toBe('succeeded');

    clock += 10_000;
    const expired = await s.expireCommands(clock);
    expect(expired.map((c) => c.id).sort()).toEqual([c2.id, c3.id].sort());
    expect(await s.expireCommands(clock)).toEqual([]);
    expect(await s.getCommand('a', c2.id)).toMatchObject({ status: 'expired', result: null, finishedAt: clock });
    // The agent did run c3 after all: its answer is the truth and replaces the silent expiry, once.
    expect(await s.finishCommand('a', c3.id, { status: 'succeeded', result: { result: { pending: 0 } } })).toMatchObject({ status: 'succeeded' });
    expect(await s.finishCommand('a', c3.id, { status: 'failed', result: {} })).toBeUndefined();
    expect(await s.countCommandsByStatus()).toEqual({ pending: 0, succeeded: 2, failed: 0, expired: 1 });
    expect(await s.getCommand('b', c1.id)).toBeUndefined();

    const first = await s.listCommands('a', { limit: 2 });
    expect(first.items.map((c) => c.id)).toEqual([c3.id, c2.id]);
    const second = await s.listCommands('a', { limit: 2, cursor: first.nextCursor! });
    expect(second).toEqual({ items: [expect.objectContaining({ id: c1.id })], nextCursor: null });
    expect((await s.listCommands('b', {})).items).toEqual([]);
    await expect(s.listCommands('a', { limit: 0 })).rejects.toMatchObject({ code: 'query_invalid' });
  });
});

describe('SqliteMessageStore: schema upgrade to version 3', () => {
  it('opens a version 2 store: adds the fleet tables and the default policy, keeps agents and tokens', async () => {
    let s = await open();
    const a = await s.createAgent({ name: 'old', policyId: 'default' });
    await s.createApiToken({ name: 'admin', role: 'admin' });
    await s.close();
    store = undefined;
    const db = await openDatabase(join(dir, STORE_FILE));
    await exec(db, "DROP TABLE policies; DROP TABLE policy_versions; DROP TABLE agent_status; DROP TABLE commands; UPDATE meta SET value = '2' WHERE key = 'schema_version';");
    await close(db);
    s = await open();
    expect((await s.getAgent(a.id))?.policyId).toBe('default');
    expect(await s.countApiTokens()).toBe(1);
    expect((await s.getPolicyVersion('default'))?.config).toEqual({});
    expect(await s.countCommandsByStatus()).toEqual({ pending: 0, succeeded: 0, failed: 0, expired: 0 });
    await s.close();
    store = undefined;
    const check = await openDatabase(join(dir, STORE_FILE), true);
    expect(await get(check, "SELECT value FROM meta WHERE key = 'schema_version'")).toEqual({ value: '3' });
    await close(check);
  });
});
