import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sampleCorpus, sampleEnvelopes, syntheticEnvelope, type TestEnvelope } from '../../../test/helpers/envelopes.js';
import { ControlPlaneError } from '../../errors.js';
import { STORE_FILE, STORE_KEY_FILE, SqliteMessageStore, StoreKeyring, type MessageQuery, type MessageSummary } from '../index.js';
import { all, close, openDatabase, run } from './sqlite.js';

let dir: string;
let store: SqliteMessageStore | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-store-'));
});

afterEach(async () => {
  await store?.close();
  store = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<SqliteMessageStore> {
  await store?.close();
  store = await SqliteMessageStore.open({ dataDir: dir });
  return store;
}

async function rowCount(): Promise<number> {
  const db = await openDatabase(join(dir, STORE_FILE), true);
  try {
    const [row] = await all<{ n: number }>(db, 'SELECT COUNT(*) AS n FROM messages');
    return row?.n ?? -1;
  } finally {
    await close(db);
  }
}

async function listAll(s: SqliteMessageStore, query: MessageQuery = {}): Promise<MessageSummary[]> {
  const out: MessageSummary[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await s.listMessages({ ...query, ...(cursor === undefined ? {} : { cursor }) });
    out.push(...page.items);
    if (page.nextCursor === null) return out;
    cursor = page.nextCursor;
  }
  throw new Error('paging did not end');
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<ControlPlaneError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ControlPlaneError);
  expect((err as ControlPlaneError).code).toBe(code);
  return err as ControlPlaneError;
}

/** Commit records in the WAL written since its last restart (frames whose salts match the header's). */
function walCommits(): { salt: string; commits: number } {
  const wal = readFileSync(join(dir, `${STORE_FILE}-wal`));
  const pageSize = wal.readUInt32BE(8);
  const salt = wal.subarray(16, 24);
  let commits = 0;
  for (let off = 32; off + 24 + pageSize <= wal.length; off += 24 + pageSize) {
    if (!wal.subarray(off + 8, off + 16).equals(salt)) break;
    if (wal.readUInt32BE(off + 4) !== 0) commits++;
  }
  return { salt: salt.toString('hex'), commits };
}

describe('SqliteMessageStore: ingest', () => {
  it('stores a batch, returns the committed seq, and gives back the exact bytes of every sample file', async () => {
    const s = await open();
    const envelopes = sampleEnvelopes(1, sampleCorpus().length);
    const result = await s.ingestBatch('agent-1', 'buf-1', envelopes);
    expect(result).toEqual({ committedSeq: envelopes.length, stored: envelopes.length, duplicates: 0 });
    expect(await s.committedSeq('agent-1', 'buf-1')).toBe(envelopes.length);
    expect(await s.committedSeq('agent-1', 'other-buffer')).toBe(0);
    const items = await listAll(s);
    expect(items.map((i) => i.seq)).toEqual(envelopes.map((e) => e.seq));
    for (const [i, item] of items.entries()) {
      const e = envelopes[i]!;
      expect(item).toMatchObject({ agentId: 'agent-1', bufferId: 'buf-1', sourceId: e.sourceId, receivedAt: e.receivedAtMs, size: e.payload.length, sha256: e.sha256.toString('hex') });
      expect(item.controlId).toBe(e.metadata.controlId);
      expect(item.messageType).toBe(e.metadata.messageType);
      const payload = await s.getPayload(item.id);
      expect(payload?.equals(e.payload), `${item.seq}`).toBe(true);
    }
    expect(await s.getPayload('999999')).toBeUndefined();
    expect(await s.getPayload('not-an-id')).toBeUndefined();
  });

  it('is idempotent on (agent, buffer, seq): resends and overlaps store nothing twice', async () => {
    const s = await open();
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(1, 10))).toEqual({ committedSeq: 10, stored: 10, duplicates: 0 });
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(1, 10))).toEqual({ committedSeq: 10, stored: 0, duplicates: 10 });
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(6, 10))).toEqual({ committedSeq: 15, stored: 5, duplicates: 5 });
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(3, 2))).toEqual({ committedSeq: 15, stored: 0, duplicates: 2 });
    expect(await rowCount()).toBe(15);
    // The same seqs under another buffer (a reinstalled agent) or another agent are new messages.
    expect(await s.ingestBatch('a', 'b2', sampleEnvelopes(1, 3))).toEqual({ committedSeq: 3, stored: 3, duplicates: 0 });
    expect(await s.ingestBatch('a2', 'b', sampleEnvelopes(1, 3))).toEqual({ committedSeq: 3, stored: 3, duplicates: 0 });
    expect(await rowCount()).toBe(21);
    const seqs = (await listAll(s, { agent: 'a' })).filter((m) => m.bufferId === 'b').map((m) => m.seq);
    expect(seqs).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
  });

  it('accepts gaps in seq (a failed agent commit leaves one) and acknowledges through the highest', async () => {
    const s = await open();
    const batch = [...sampleEnvelopes(1, 3), ...sampleEnvelopes(7, 2)];
    expect(await s.ingestBatch('a', 'b', batch)).toEqual({ committedSeq: 8, stored: 5, duplicates: 0 });
  });

  it('keeps the committed seq across a restart', async () => {
    let s = await open();
    await s.ingestBatch('a', 'b', sampleEnvelopes(1, 40));
    s = await open();
    expect(await s.committedSeq('a', 'b')).toBe(40);
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(30, 20))).toEqual({ committedSeq: 49, stored: 9, duplicates: 11 });
    expect(await rowCount()).toBe(49);
  });

  it('a batch that fails inside its transaction leaves nothing, and its resend is stored whole', async () => {
    const s = await open();
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(1, 5))).toMatchObject({ committedSeq: 5, stored: 5 });
    // A failure SQLite raises mid-transaction (after some rows went in), injected from outside.
    const db = await openDatabase(join(dir, STORE_FILE));
    await run(db, "CREATE TRIGGER fail_seq_8 BEFORE INSERT ON messages WHEN NEW.seq = 8 BEGIN SELECT RAISE(ABORT, 'injected'); END");
    await expectCode(s.ingestBatch('a', 'b', sampleEnvelopes(6, 5)), 'store_io');
    expect(await rowCount()).toBe(5);
    expect(await s.committedSeq('a', 'b')).toBe(5);
    await run(db, 'DROP TRIGGER fail_seq_8');
    await close(db);
    // The committed seq this process remembers did not move with the failed batch: all five are new.
    expect(await s.ingestBatch('a', 'b', sampleEnvelopes(6, 5))).toEqual({ committedSeq: 10, stored: 5, duplicates: 0 });
    expect(await rowCount()).toBe(10);
  });

  it('commits each batch in exactly one transaction (one commit record in the WAL)', async () => {
    const s = await open();
    await s.ingestBatch('a', 'b', [syntheticEnvelope(1)]);
    const before = walCommits();
    // 300 rows: several multi-row INSERT chunks (256 + 32 + 8 + 4) plus the high-water mark.
    await s.ingestBatch('a', 'b', Array.from({ length: 300 }, (_, i) => syntheticEnvelope(i + 2)));
    const after = walCommits();
    expect(after.salt).toBe(before.salt);
    expect(after.commits - before.commits).toBe(1);
    await s.ingestBatch('a', 'b', [syntheticEnvelope(302)]);
    expect(walCommits().commits - after.commits).toBe(1);
    expect(await rowCount()).toBe(302);
  });

  it('rejects a whole batch when one payload does not match its sha256, naming no content', async () => {
    const s = await open();
    await s.ingestBatch('a', 'b', sampleEnvelopes(1, 5));
    const batch = sampleEnvelopes(6, 10).map((e, i): TestEnvelope => {
      if (i !== 7) return e;
      const payload = Buffer.from(e.payload);
      payload[payload.length - 2] = payload[payload.length - 2]! ^ 0x01;
      return { ...e, payload };
    });
    const err = await expectCode(s.ingestBatch('a', 'b', batch), 'payload_hash_mismatch');
    expect(err.message).toContain('seq 13');
    expect(err.message).not.toContain('MSH');
    expect(err.message).not.toContain(batch[7]!.payload.subarray(20, 40).toString('latin1'));
    expect(await rowCount()).toBe(5);
    expect(await s.committedSeq('a', 'b')).toBe(5);
  });

  it('rejects batches whose seqs are not strictly increasing or whose envelopes are malformed, storing nothing', async () => {
    const s = await open();
    const [e1, e2, e3] = sampleEnvelopes(1, 3) as [TestEnvelope, TestEnvelope, TestEnvelope];
    await expectCode(s.ingestBatch('a', 'b', [e1, e3, e2]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', 'b', [e1, e1]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', 'b', [{ ...e1, seq: 0 }]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', 'b', [{ ...e1, seq: 2 ** 53 }]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', 'b', [{ ...e1, sourceId: '' }]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', 'b', [{ ...e1, sha256: e1.sha256.subarray(0, 16) }]), 'batch_invalid');
    await expectCode(s.ingestBatch('', 'b', [e1]), 'batch_invalid');
    await expectCode(s.ingestBatch('a', '', [e1]), 'batch_invalid');
    expect(await rowCount()).toBe(0);
    expect(await s.committedSeq('a', 'b')).toBe(0);
  });

  it('serializes concurrent batches from many agents without losing or mixing any', async () => {
    const s = await open();
    const agents = Array.from({ length: 6 }, (_, i) => `agent-${i}`);
    await Promise.all(
      agents.map(async (agent) => {
        for (let b = 0; b < 5; b++) await s.ingestBatch(agent, 'buf', sampleEnvelopes(b * 20 + 1, 20));
      }),
    );
    expect(await rowCount()).toBe(6 * 100);
    for (const agent of agents) {
      expect(await s.committedSeq(agent, 'buf')).toBe(100);
      expect((await listAll(s, { agent, limit: 1000 })).map((m) => m.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    }
  });
});

describe('SqliteMessageStore: listing', () => {
  async function seed(s: SqliteMessageStore): Promise<void> {
    // Two agents, three sources, ADT and ORU, interleaved commits.
    for (let b = 0; b < 5; b++) {
      await s.ingestBatch('agent-x', 'bx', Array.from({ length: 30 }, (_, i) => syntheticEnvelope(b * 30 + i + 1, { sourceId: i % 3 === 0 ? 'adt' : 'lab' })));
      await s.ingestBatch('agent-y', 'by', Array.from({ length: 20 }, (_, i) => syntheticEnvelope(b * 20 + i + 1, { sourceId: 'adt' })));
    }
  }

  it('pages through everything with the cursor, each message once, in id order both ways', async () => {
    const s = await open();
    await seed(s);
    const everything = await listAll(s, { limit: 1000 });
    expect(everything).toHaveLength(250);
    const ids = everything.map((m) => Number(m.id));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    for (const limit of [1, 7, 40, 250, 251]) {
      expect((await listAll(s, { limit })).map((m) => m.id)).toEqual(everything.map((m) => m.id));
    }
    const desc = await listAll(s, { limit: 33, order: 'desc' });
    expect(desc.map((m) => m.id)).toEqual([...everything].reverse().map((m) => m.id));
    const first = await s.listMessages({ limit: 250 });
    expect(first.nextCursor).toBeNull();
    // A page's cursor keeps working while new messages arrive after it.
    const page = await s.listMessages({ limit: 100 });
    await s.ingestBatch('agent-z', 'bz', [syntheticEnvelope(1)]);
    const rest = await listAll(s, { limit: 100, cursor: page.nextCursor! });
    expect(rest).toHaveLength(151);
  });

  it('filters by agent, source, type, type^trigger, control id, since and until, also across pages', async () => {
    const s = await open();
    await seed(s);
    const everything = await listAll(s, { limit: 1000 });
    const cases: [MessageQuery, (m: MessageSummary) => boolean][] = [
      [{ agent: 'agent-y' }, (m) => m.agentId === 'agent-y'],
      [{ source: 'lab' }, (m) => m.sourceId === 'lab'],
      [{ agent: 'agent-x', source: 'adt' }, (m) => m.agentId === 'agent-x' && m.sourceId === 'adt'],
      [{ type: 'ADT' }, (m) => m.messageType === 'ADT'],
      [{ type: 'ORU^R01' }, (m) => m.messageType === 'ORU' && m.triggerEvent === 'R01'],
      [{ type: 'ORU^A01' }, () => false],
      [{ controlId: 'E0000000017' }, (m) => m.controlId === 'E0000000017'],
      [{ since: 1_764_000_000_050 }, (m) => m.receivedAt >= 1_764_000_000_050],
      [{ until: 1_764_000_000_050 }, (m) => m.receivedAt < 1_764_000_000_050],
      [{ agent: 'agent-x', since: 1_764_000_000_010, until: 1_764_000_000_100, type: 'ADT' }, (m) => m.agentId === 'agent-x' && m.receivedAt >= 1_764_000_000_010 && m.receivedAt < 1_764_000_000_100 && m.messageType === 'ADT'],
    ];
    for (const [query, predicate] of cases) {
      const expected = everything.filter(predicate).map((m) => m.id);
      expect((await listAll(s, { ...query, limit: 9 })).map((m) => m.id), JSON.stringify(query)).toEqual(expected);
    }
    expect((await listAll(s, { controlId: 'E0000000017' })).length).toBe(2);
  });

  it('refuses bad cursors and limits with stable codes', async () => {
    const s = await open();
    await seed(s);
    await expectCode(s.listMessages({ cursor: 'garbage' }), 'cursor_invalid');
    await expectCode(s.listMessages({ cursor: Buffer.from('v1:a:-5').toString('base64url') }), 'cursor_invalid');
    await expectCode(s.listMessages({ limit: 0 }), 'query_invalid');
    await expectCode(s.listMessages({ limit: 1001 }), 'query_invalid');
    await expectCode(s.listMessages({ since: Number.NaN }), 'query_invalid');
    const page = await s.listMessages({ limit: 5, order: 'desc' });
    await expectCode(s.listMessages({ cursor: page.nextCursor!, order: 'asc' }), 'query_invalid');
  });
});

describe('SqliteMessageStore: encryption at rest', () => {
  it('leaves nothing of a payload readable in the database files, which are owner-only', async () => {
    const canary = `CANARY${randomBytes(8).toString('hex').toUpperCase()}`;
    const s = await open();
    await s.ingestBatch('a', 'b', Array.from({ length: 50 }, (_, i) => syntheticEnvelope(i + 1, { patientName: `${canary}^PATIENT` })));
    const files = [STORE_FILE, `${STORE_FILE}-wal`, `${STORE_FILE}-shm`].map((f) => join(dir, f));
    const check = (): void => {
      for (const f of files.filter((p) => existsSync(p))) {
        const bytes = readFileSync(f);
        expect(bytes.includes(canary), f).toBe(false);
        expect(bytes.includes(Buffer.from('PID|1||')), f).toBe(false);
        expect(statSync(f).mode & 0o777, f).toBe(0o600);
      }
    };
    expect(existsSync(files[1]!)).toBe(true);
    check();
    await s.close();
    store = undefined;
    check();
    expect(statSync(join(dir, STORE_KEY_FILE)).mode & 0o777).toBe(0o600);
    // And the sealed payloads still open to the exact bytes.
    const again = await open();
    const [first] = (await again.listMessages({ limit: 1 })).items;
    expect((await again.getPayload(first!.id))?.toString('utf8')).toContain(canary);
  });

  it('binds each sealed payload to its row: moved between rows, or its seq or agent edited, it no longer opens', async () => {
    let s = await open();
    await s.ingestBatch('a', 'b', sampleEnvelopes(1, 3));
    await s.ingestBatch('other', 'b', sampleEnvelopes(1, 1));
    const ids = (await listAll(s)).map((m) => m.id);
    await s.close();
    store = undefined;
    const db = await openDatabase(join(dir, STORE_FILE));
    await run(db, 'UPDATE messages SET payload = (SELECT payload FROM messages WHERE id = ?) WHERE id = ?', [Number(ids[0]), Number(ids[1])]);
    await run(db, 'UPDATE messages SET seq = 99 WHERE id = ?', [Number(ids[2])]);
    await run(db, "UPDATE messages SET agent_id = 'impostor' WHERE id = ?", [Number(ids[3])]);
    await close(db);
    s = await open();
    expect((await s.getPayload(ids[0]!))?.length).toBeGreaterThan(0);
    await expectCode(s.getPayload(ids[1]!), 'payload_corrupt');
    await expectCode(s.getPayload(ids[2]!), 'payload_corrupt');
    await expectCode(s.getPayload(ids[3]!), 'payload_corrupt');
  });

  it('keeps rows sealed under an older key readable after a key rotation, and refuses a key file others can read', async () => {
    let s = await open();
    await s.ingestBatch('a', 'b', sampleEnvelopes(1, 2));
    await s.close();
    store = undefined;
    const keyFile = join(dir, STORE_KEY_FILE);
    const oldKey = StoreKeyring.load(keyFile).activeKeyId;
    const rotated = StoreKeyring.rotate(keyFile);
    expect(rotated.activeKeyId).not.toBe(oldKey);
    expect(rotated.keyIds).toEqual([oldKey, rotated.activeKeyId]);
    s = await open();
    await s.ingestBatch('a', 'b', sampleEnvelopes(3, 2));
    const envelopes = sampleEnvelopes(1, 4);
    for (const [i, m] of (await listAll(s)).entries()) expect((await s.getPayload(m.id))?.equals(envelopes[i]!.payload)).toBe(true);
    const db = await openDatabase(join(dir, STORE_FILE), true);
    const keys = await all<{ key_id: string }>(db, 'SELECT key_id FROM messages ORDER BY id');
    await close(db);
    expect(keys.map((k) => k.key_id)).toEqual([oldKey, oldKey, rotated.activeKeyId, rotated.activeKeyId]);
    await s.close();
    store = undefined;
    chmodSync(keyFile, 0o644);
    await expectCode(SqliteMessageStore.open({ dataDir: dir }), 'key_file_permissions');
  });
});

describe('SqliteMessageStore: agents', () => {
  it('creates agents with a one-time secret, keeps only its hash, verifies it and honours revocation', async () => {
    const s = await open();
    const { id, secret } = await s.createAgent({ name: 'site-1', policyId: 'default' });
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await s.verifyAgentSecret(id, secret)).toMatchObject({ status: 'ok', agent: { id, name: 'site-1', policyId: 'default', revokedAt: null } });
    expect(await s.verifyAgentSecret(id, `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`)).toEqual({ status: 'wrong_secret' });
    expect(await s.verifyAgentSecret(id, '')).toEqual({ status: 'wrong_secret' });
    expect(await s.verifyAgentSecret('no-such-agent', secret)).toEqual({ status: 'unknown_agent' });
    const other = await s.createAgent({ name: 'site-2', policyId: 'default' });
    expect(other.id).not.toBe(id);
    expect(await s.verifyAgentSecret(other.id, secret)).toEqual({ status: 'wrong_secret' });
    expect(await s.revokeAgent(id)).toBe(true);
    expect(await s.revokeAgent('no-such-agent')).toBe(false);
    expect(await s.verifyAgentSecret(id, secret)).toEqual({ status: 'revoked' });
    expect((await s.getAgent(id))?.revokedAt).toEqual(expect.any(Number));
    expect(await s.verifyAgentSecret(other.id, other.secret)).toMatchObject({ status: 'ok' });
    await s.close();
    store = undefined;
    for (const f of [STORE_FILE, `${STORE_FILE}-wal`].map((p) => join(dir, p)).filter((p) => existsSync(p))) {
      const bytes = readFileSync(f);
      expect(bytes.includes(secret), f).toBe(false);
      expect(bytes.includes(Buffer.from(secret, 'base64url')), f).toBe(false);
    }
  });

  it('refuses every call once closed', async () => {
    const s = await open();
    await s.close();
    store = undefined;
    await expectCode(s.ingestBatch('a', 'b', sampleEnvelopes(1, 1)), 'store_closed');
    await expectCode(s.listMessages({}), 'store_closed');
  });
});
