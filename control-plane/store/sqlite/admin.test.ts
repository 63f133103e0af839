import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sampleEnvelopes } from '../../../test/helpers/envelopes.js';
import { ControlPlaneError } from '../../errors.js';
import { STORE_FILE, SqliteMessageStore } from '../index.js';
import { close, exec, get, openDatabase } from './sqlite.js';

let dir: string;
let store: SqliteMessageStore | undefined;
let clock: number;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-admin-'));
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

function dbBytes(): Buffer {
  return Buffer.concat([STORE_FILE, `${STORE_FILE}-wal`].map((f) => join(dir, f)).filter((f) => existsSync(f)).map((f) => readFileSync(f)));
}

describe('SqliteMessageStore: enrollment tokens', () => {
  it('issues a token with the defaults (default policy, 24 h, one use) and keeps only its hash', async () => {
    const s = await open();
    const t = await s.createEnrollmentToken({ createdBy: 'token:admin' });
    expect(t).toMatchObject({ policyId: 'default', maxUses: 1, uses: 0, revokedAt: null, createdAt: clock, expiresAt: clock + 86_400_000 });
    expect(t.token).toMatch(/^ferry_enroll_[A-Za-z0-9_-]{43}$/);
    await s.close();
    store = undefined;
    expect(dbBytes().includes(t.token)).toBe(false);
    expect(dbBytes().includes(t.token.slice('ferry_enroll_'.length))).toBe(false);
  });

  it('counts uses and tells unknown, used up, expired and revoked apart', async () => {
    const s = await open();
    await expect(s.createEnrollmentToken({ createdBy: 'x', policyId: 'lab' })).rejects.toMatchObject({ code: 'policy_unknown' });
    await s.createPolicy({ id: 'lab', name: 'Lab', config: {}, createdBy: 'x' });
    const once = await s.createEnrollmentToken({ createdBy: 'x', policyId: 'lab' });
    expect(await s.consumeEnrollmentToken(once.token)).toEqual({ status: 'ok', tokenId: once.id, policyId: 'lab' });
    expect(await s.consumeEnrollmentToken(once.token)).toEqual({ status: 'used_up' });
    expect(await s.consumeEnrollmentToken('ferry_enroll_nope')).toEqual({ status: 'unknown' });

    const short = await s.createEnrollmentToken({ createdBy: 'x', expiresInSecs: 60, maxUses: 5 });
    clock += 59_999;
    expect((await s.consumeEnrollmentToken(short.token)).status).toBe('ok');
    clock += 1;
    expect(await s.consumeEnrollmentToken(short.token)).toEqual({ status: 'expired' });

    const revoked = await s.createEnrollmentToken({ createdBy: 'x' });
    expect(await s.revokeEnrollmentToken(revoked.id)).toBe(true);
    expect(await s.revokeEnrollmentToken(revoked.id)).toBe(true);
    expect(await s.revokeEnrollmentToken('no-such-token')).toBe(false);
    expect(await s.consumeEnrollmentToken(revoked.token)).toEqual({ status: 'revoked' });
  });

  it('never lets concurrent enrollments use a token more than max_uses times', async () => {
    const s = await open();
    const t = await s.createEnrollmentToken({ createdBy: 'x', maxUses: 3 });
    const results = await Promise.all(Array.from({ length: 10 }, () => s.consumeEnrollmentToken(t.token)));
    expect(results.filter((r) => r.status === 'ok')).toHaveLength(3);
    expect(results.filter((r) => r.status === 'used_up')).toHaveLength(7);
  });

  it('refuses a non-positive expiry or use count', async () => {
    const s = await open();
    await expect(s.createEnrollmentToken({ createdBy: 'x', maxUses: 0 })).rejects.toMatchObject({ code: 'query_invalid' });
    await expect(s.createEnrollmentToken({ createdBy: 'x', expiresInSecs: 1.5 })).rejects.toBeInstanceOf(ControlPlaneError);
  });
});

describe('SqliteMessageStore: API tokens', () => {
  it('verifies tokens to their role and id, refuses unknown ones, and keeps only hashes', async () => {
    const s = await open();
    expect(await s.countApiTokens()).toBe(0);
    const admin = await s.createApiToken({ name: 'admin', role: 'admin' });
    const viewer = await s.createApiToken({ name: 'dash', role: 'viewer' });
    expect(admin.token).toMatch(/^ferry_api_[A-Za-z0-9_-]{43}$/);
    expect(await s.verifyApiToken(admin.token)).toEqual({ tokenId: admin.id, name: 'admin', role: 'admin' });
    expect(await s.verifyApiToken(viewer.token)).toEqual({ tokenId: viewer.id, name: 'dash', role: 'viewer' });
    expect(await s.verifyApiToken(`${admin.token}x`)).toBeUndefined();
    expect(await s.verifyApiToken('')).toBeUndefined();
    expect(await s.countApiTokens()).toBe(2);
    await expect(s.createApiToken({ name: 'x', role: 'root' as 'admin' })).rejects.toMatchObject({ code: 'query_invalid' });
    await s.close();
    store = undefined;
    expect(dbBytes().includes(admin.token)).toBe(false);
  });
});

describe('SqliteMessageStore: audit log', () => {
  it('appends entries and lists them newest first, paged by cursor, each once', async () => {
    const s = await open();
    for (let i = 0; i < 7; i++) {
      clock += 1000;
      await s.audit({ actor: 'token:a', action: 'message.payload.read', target: `message:${i}`, details: { i } });
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await s.listAudit({ limit: 3, ...(cursor ? { cursor } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((e) => e.target));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual([6, 5, 4, 3, 2, 1, 0].map((i) => `message:${i}`));
    const [newest] = (await s.listAudit({ limit: 1 })).items;
    expect(newest).toMatchObject({ actor: 'token:a', action: 'message.payload.read', at: clock, details: { i: 6 } });
    await expect(s.listAudit({ limit: 0 })).rejects.toMatchObject({ code: 'query_invalid' });
    await expect(s.listAudit({ cursor: 'garbage' })).rejects.toMatchObject({ code: 'cursor_invalid' });
  });
});

describe('SqliteMessageStore: agents overview', () => {
  it('lists agents with last seen, and per-buffer committed seq, message and byte totals', async () => {
    const s = await open();
    const a = await s.createAgent({ name: 'a', policyId: 'default' });
    clock += 1;
    const b = await s.createAgent({ name: 'b', policyId: 'lab' });
    expect((await s.listAgents()).map((x) => [x.id, x.name, x.policyId, x.lastSeen])).toEqual([
      [a.id, 'a', 'default', null],
      [b.id, 'b', 'lab', null],
    ]);
    await s.markAgentSeen(a.id, 5000);
    await s.markAgentSeen(a.id, 4000);
    expect((await s.getAgent(a.id))?.lastSeen).toBe(5000);
    const envelopes = sampleEnvelopes(1, 4);
    await s.ingestBatch(a.id, 'buf-1', envelopes);
    await s.ingestBatch(a.id, 'buf-2', sampleEnvelopes(1, 2));
    const stats = await s.bufferStats(a.id);
    expect(stats.map((x) => [x.bufferId, x.committedSeq, x.messages])).toEqual([
      ['buf-1', 4, 4],
      ['buf-2', 2, 2],
    ]);
    expect(stats[0]!.bytes).toBe(envelopes.reduce((n, e) => n + e.payload.length, 0));
    expect(await s.bufferStats(b.id)).toEqual([]);
    expect(await s.bufferStats()).toHaveLength(2);
  });

  it('upgrades a schema version 1 store in place', async () => {
    let s = await open();
    const a = await s.createAgent({ name: 'old', policyId: 'default' });
    await s.close();
    store = undefined;
    const db = await openDatabase(join(dir, STORE_FILE));
    await exec(db, "ALTER TABLE agents DROP COLUMN last_seen; DROP TABLE enrollment_tokens; DROP TABLE api_tokens; DROP TABLE audit_log; DROP TABLE policies; DROP TABLE policy_versions; DROP TABLE agent_status; DROP TABLE commands; UPDATE meta SET value = '1' WHERE key = 'schema_version';");
    await close(db);
    s = await open();
    expect((await s.getAgent(a.id))?.lastSeen).toBeNull();
    expect(await s.countApiTokens()).toBe(0);
    await s.close();
    store = undefined;
    const check = await openDatabase(join(dir, STORE_FILE), true);
    expect(await get(check, "SELECT value FROM meta WHERE key = 'schema_version'")).toEqual({ value: '3' });
    await close(check);
  });
});
