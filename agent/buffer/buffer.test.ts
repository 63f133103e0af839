import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { adtA01, realisticMessage } from '../../test/helpers/messages.js';
import { Keyring, MessageBuffer, checkBuffer, type IncomingMessage } from './index.js';
import { all, close, openDatabase, run } from './sqlite.js';

let dir: string;
let keyFile: string;
let dbFile: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-buffer-'));
  keyFile = join(dir, 'keys.json');
  dbFile = join(dir, 'buffer.db');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function message(payload: Buffer, controlId: string, sourceId = 'src-a'): IncomingMessage {
  return {
    sourceId,
    payload,
    receivedAt: Date.now(),
    meta: { messageType: 'ADT', triggerEvent: 'A01', controlId, sendingApplication: 'EPIC', sendingFacility: 'CITYHOSP', version: '2.5.1' },
  };
}

function msg(n: number, opts: { patientName?: string; sourceId?: string } = {}): IncomingMessage {
  const id = `C${String(n).padStart(10, '0')}`;
  return message(realisticMessage('C', n, opts), id, opts.sourceId);
}

async function openBuffer(maxBytes = 1024 ** 3): Promise<MessageBuffer> {
  return MessageBuffer.open({ path: dbFile, keyring: Keyring.loadOrCreate(keyFile), maxBytes });
}

async function storedSeqs(buffer: MessageBuffer, messages: IncomingMessage[], options = {}): Promise<number[]> {
  const result = await buffer.append(messages, options);
  if (result.status !== 'committed') throw new Error(`append ${result.status}`);
  return result.outcomes.map((o) => o.seq);
}

describe('MessageBuffer', () => {
  it('stores payload bytes exactly and returns them in seq order with their metadata', async () => {
    const buffer = await openBuffer();
    const messages = Array.from({ length: 20 }, (_, i) => msg(i));
    const seqs: number[] = [];
    for (const m of messages) seqs.push(...(await storedSeqs(buffer, [m])));
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const rows = await buffer.readOldest(0, 100);
    expect(rows.map((r) => r.seq)).toEqual(seqs);
    rows.forEach((r, i) => {
      expect(r.payload.equals(messages[i]!.payload)).toBe(true);
      expect(r.meta.controlId).toBe(messages[i]!.meta.controlId);
      expect(r.sourceId).toBe('src-a');
    });
    expect((await buffer.readOldest(15, 100)).map((r) => r.seq)).toEqual([16, 17, 18, 19, 20]);
    expect((await buffer.readOldest(0, 3)).length).toBe(3);
    expect(buffer.stats().depth).toBe(20);
    await buffer.close();
  });

  it('joins appends that arrive during a commit into the next commit (group commit)', async () => {
    const buffer = await openBuffer();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => buffer.append([msg(i)])));
    expect(results.every((r) => r.status === 'committed')).toBe(true);
    const seqs = results.flatMap((r) => (r.status === 'committed' ? r.outcomes.map((o) => o.seq) : []));
    expect(new Set(seqs).size).toBe(200);
    // 200 appends issued at once: the first commits alone, the rest join one or a few commits.
    expect(buffer.stats().commits).toBeLessThan(10);
    expect(buffer.stats().depth).toBe(200);
    await buffer.close();
  });

  it('commits a group atomically and in the order appended', async () => {
    const buffer = await openBuffer();
    const group = [msg(1), msg(2), msg(3)];
    expect(await storedSeqs(buffer, group)).toEqual([1, 2, 3]);
    await buffer.close();
  });

  it('leaves nothing of a payload readable in the database or WAL files', async () => {
    const buffer = await openBuffer();
    const canary = 'CANARYQX^ZEBULON';
    await storedSeqs(buffer, Array.from({ length: 10 }, (_, i) => msg(i, { patientName: canary })));
    // Before and after the checkpoint: the WAL holds the fresh pages first.
    for (const f of [dbFile, `${dbFile}-wal`]) {
      if (!existsSync(f)) continue;
      const raw = readFileSync(f);
      expect(raw.includes('CANARYQX')).toBe(false);
      expect(raw.includes('ZEBULON')).toBe(false);
      expect(raw.includes('1200 N ELM STREET')).toBe(false);
    }
    await buffer.close();
    const raw = readFileSync(dbFile);
    expect(raw.length).toBeGreaterThan(0);
    expect(raw.includes('CANARYQX')).toBe(false);
    expect(raw.includes('GREENSBORO')).toBe(false);
  });

  it('creates the key file with mode 0600 and refuses one others can read', async () => {
    const keyring = Keyring.loadOrCreate(keyFile);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(keyring.keyIds.length).toBe(1);
    chmodSync(keyFile, 0o644);
    expect(() => Keyring.load(keyFile)).toThrow(/readable by other users/);
    chmodSync(keyFile, 0o600);
    expect(Keyring.load(keyFile).activeKeyId).toBe(keyring.activeKeyId);
    // The database files are owner-only too.
    const buffer = await openBuffer();
    expect(statSync(dbFile).mode & 0o077).toBe(0);
    await buffer.close();
  });

  it('rotates keys: new rows use the new key, old rows stay readable, check passes', async () => {
    const buffer = await openBuffer();
    const first = Keyring.load(keyFile).activeKeyId;
    await storedSeqs(buffer, [msg(1), msg(2)]);
    const rotated = Keyring.rotate(keyFile);
    expect(rotated.activeKeyId).not.toBe(first);
    expect(rotated.keyIds).toEqual([first, rotated.activeKeyId]);
    buffer.useKeyring(rotated);
    await storedSeqs(buffer, [msg(3)]);
    const rows = await buffer.readOldest(0, 10);
    expect(rows.map((r) => r.meta.controlId)).toEqual(['C0000000001', 'C0000000002', 'C0000000003']);
    await buffer.close();

    const db = await openDatabase(dbFile, true);
    const keyIds = await all<{ seq: number; key_id: string }>(db, 'SELECT seq, key_id FROM messages ORDER BY seq');
    await close(db);
    expect(keyIds.map((r) => r.key_id)).toEqual([first, first, rotated.activeKeyId]);
    const report = await checkBuffer(dbFile, Keyring.load(keyFile));
    expect(report).toMatchObject({ ok: true, rows: 3, sqliteIntegrity: 'ok' });

    // Without the old key, its rows are reported (by seq, without content) and the check fails.
    const file = JSON.parse(readFileSync(keyFile, 'utf8')) as { keys: { id: string }[] };
    file.keys = file.keys.filter((k) => k.id !== first);
    writeFileSync(keyFile, JSON.stringify(file), { mode: 0o600 });
    const broken = await checkBuffer(dbFile, Keyring.load(keyFile));
    expect(broken.ok).toBe(false);
    expect(broken.failures.map((f) => f.seq)).toEqual([1, 2]);
    expect(broken.failures[0]!.reason).toMatch(/key/);
  });

  it('binds each sealed payload to its row: a payload moved to another row fails to open', async () => {
    const buffer = await openBuffer();
    await storedSeqs(buffer, [msg(1), msg(2)]);
    await buffer.close();
    const db = await openDatabase(dbFile);
    await run(db, 'UPDATE messages SET payload = (SELECT payload FROM messages WHERE seq = 1) WHERE seq = 2');
    await close(db);
    const report = await checkBuffer(dbFile, Keyring.load(keyFile));
    expect(report.ok).toBe(false);
    expect(report.failures).toEqual([{ seq: 2, reason: expect.stringMatching(/failed authentication/) }]);
  });

  it('reports a tampered hash', async () => {
    const buffer = await openBuffer();
    await storedSeqs(buffer, [msg(1)]);
    await buffer.close();
    const db = await openDatabase(dbFile);
    await run(db, 'UPDATE messages SET sha256 = zeroblob(32) WHERE seq = 1');
    await close(db);
    const report = await checkBuffer(dbFile, Keyring.load(keyFile));
    expect(report.failures).toEqual([{ seq: 1, reason: 'sha256 does not match the recorded hash' }]);
  });

  it('never reuses a seq, even after every row is deleted and the buffer reopened', async () => {
    let buffer = await openBuffer();
    await storedSeqs(buffer, [msg(1), msg(2), msg(3)]);
    expect(await buffer.deleteThrough(3)).toBe(3);
    expect(buffer.stats()).toMatchObject({ depth: 0, bytes: 0, oldestReceivedAt: null });
    const bufferId = buffer.bufferId;
    await buffer.close();
    buffer = await openBuffer();
    expect(buffer.bufferId).toBe(bufferId);
    expect(await storedSeqs(buffer, [msg(4)])).toEqual([4]);
    await buffer.close();
  });

  it('gives each new database a random buffer id', async () => {
    const a = await openBuffer();
    await a.close();
    dbFile = join(dir, 'other.db');
    const b = await openBuffer();
    expect(b.bufferId).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.bufferId).not.toBe(a.bufferId);
    await b.close();
  });

  it('refuses appends at max_bytes without storing, says it is full, and recovers after delivery', async () => {
    const one = msg(0).payload.length;
    const buffer = await openBuffer(one * 5);
    await storedSeqs(buffer, [msg(1), msg(2), msg(3), msg(4)]);
    expect(buffer.stats().full).toBe(false);
    const refused = await buffer.append([msg(5), msg(6)]);
    expect(refused).toEqual({ status: 'full' });
    expect(buffer.stats()).toMatchObject({ depth: 4, full: true });
    await buffer.deleteThrough(2);
    expect(buffer.stats().full).toBe(false);
    expect(await storedSeqs(buffer, [msg(5)])).toEqual([5]);
    await buffer.close();
  });

  it('counts messages still waiting for their commit against max_bytes', async () => {
    const one = msg(0).payload.length;
    const buffer = await openBuffer(one * 3);
    const results = await Promise.all([2, 4, 6, 8, 10].map((n) => buffer.append([msg(n)])));
    expect(results.map((r) => r.status)).toEqual(['committed', 'committed', 'committed', 'full', 'full']);
    await buffer.close();
  });

  it('deletes delivered rows and gives the disk space back', async () => {
    const buffer = await openBuffer();
    const big = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 80; i++) await storedSeqs(buffer, [message(Buffer.concat([adtA01(`B${i}`), big]), `B${i}`)]);
    await buffer.close();
    const fullSize = statSync(dbFile).size;
    expect(fullSize).toBeGreaterThan(5 * 1024 * 1024);
    const reopened = await openBuffer();
    expect(await reopened.deleteThrough(80)).toBe(80);
    await reopened.close();
    expect(statSync(dbFile).size).toBeLessThan(fullSize / 10);
  });

  it('stores a resend (same source, control id and bytes) once inside the dedupe window, across restarts', async () => {
    let buffer = await openBuffer();
    const m = msg(1);
    const first = await buffer.append([m], { dedupeWindowSecs: 60 });
    const again = await buffer.append([m], { dedupeWindowSecs: 60 });
    expect(first).toEqual({ status: 'committed', outcomes: [{ status: 'stored', seq: 1 }] });
    expect(again).toEqual({ status: 'committed', outcomes: [{ status: 'duplicate', seq: 1 }] });
    // Twice in one commit: stored once.
    const twice = await Promise.all([buffer.append([msg(2)], { dedupeWindowSecs: 60 }), buffer.append([msg(2)], { dedupeWindowSecs: 60 })]);
    expect(twice.map((r) => (r.status === 'committed' ? r.outcomes[0]!.status : r.status)).sort()).toEqual(['duplicate', 'stored']);
    await buffer.close();
    buffer = await openBuffer();
    expect(await buffer.append([m], { dedupeWindowSecs: 60 })).toEqual({ status: 'committed', outcomes: [{ status: 'duplicate', seq: 1 }] });
    expect(buffer.stats().depth).toBe(2);
    await buffer.close();
  });

  it('after a restart recognises every resend of a window larger than one page of the filter load', async () => {
    let buffer = await openBuffer();
    const messages = Array.from({ length: 1200 }, (_, i) => msg(i, { sourceId: i % 3 === 0 ? 'src-b' : 'src-a' }));
    await Promise.all(messages.map((m) => buffer.append([m], { dedupeWindowSecs: 60 })));
    await buffer.close();
    buffer = await openBuffer();
    const again = await Promise.all(messages.map((m) => buffer.append([m], { dedupeWindowSecs: 60 })));
    expect(again.filter((r) => r.status === 'committed' && r.outcomes[0]!.status === 'duplicate').length).toBe(1200);
    expect(buffer.stats().depth).toBe(1200);
    await buffer.close();
  });

  it('stores as new: different bytes under a reused control id, another source, a zero window, or after the window', async () => {
    const buffer = await openBuffer();
    const a = message(Buffer.from('MSH|^~\\&|A|B|C|D|20260101||ADT^A01|SAME|P|2.5\rPID|1||1\r'), 'SAME');
    const b = message(Buffer.from('MSH|^~\\&|A|B|C|D|20260101||ADT^A01|SAME|P|2.5\rPID|1||2\r'), 'SAME');
    const otherSource = { ...a, sourceId: 'src-b' };
    expect(await storedSeqs(buffer, [a], { dedupeWindowSecs: 60 })).toEqual([1]);
    expect(await storedSeqs(buffer, [b], { dedupeWindowSecs: 60 })).toEqual([2]);
    expect(await storedSeqs(buffer, [otherSource], { dedupeWindowSecs: 60 })).toEqual([3]);
    expect(await storedSeqs(buffer, [a], { dedupeWindowSecs: 0 })).toEqual([4]);
    await new Promise((r) => setTimeout(r, 120));
    expect(await storedSeqs(buffer, [b], { dedupeWindowSecs: 0.1 })).toEqual([5]);
    expect(await buffer.pruneDedupe(0)).toBeGreaterThan(0);
    await buffer.close();
  });

  it('recognises resends across pipelined commits (next group sealed while one is written)', async () => {
    const buffer = await MessageBuffer.open({ path: dbFile, keyring: Keyring.loadOrCreate(keyFile), maxBytes: 1024 ** 3, maxMessagesPerCommit: 20 });
    // Each block of 25 messages is appended twice in a row: a resend lands in the same, the next,
    // or the one-after commit, including the one sealed while its original is being written.
    const order: number[] = [];
    for (let b = 0; b < 8; b++) for (let round = 0; round < 2; round++) for (let i = 0; i < 25; i++) order.push(b * 25 + i);
    const results = await Promise.all(order.map((n) => buffer.append([msg(n)], { dedupeWindowSecs: 60 })));
    const seqOf = new Map<number, number>();
    let stored = 0;
    results.forEach((r, k) => {
      if (r.status !== 'committed') throw new Error(r.status);
      const o = r.outcomes[0]!;
      if (o.status === 'stored') stored++;
      const n = order[k]!;
      if (seqOf.has(n)) expect(o).toEqual({ status: 'duplicate', seq: seqOf.get(n) });
      else seqOf.set(n, o.seq);
    });
    expect(stored).toBe(200);
    expect(buffer.stats().commits).toBeGreaterThanOrEqual(20);
    const rows = await buffer.readOldest(0, 1000);
    expect(rows.length).toBe(200);
    expect(new Set(rows.map((r) => r.meta.controlId)).size).toBe(200);
    await buffer.close();
  });

  it('finishes every commit in flight on close, then refuses appends', async () => {
    const buffer = await openBuffer();
    const inflight = Array.from({ length: 50 }, (_, i) => buffer.append([msg(i)]));
    await buffer.close();
    const results = await Promise.all(inflight);
    expect(results.every((r) => r.status === 'committed')).toBe(true);
    expect(await buffer.append([msg(99)])).toEqual({ status: 'closed' });
    const reopened = await openBuffer();
    expect(reopened.stats().depth).toBe(50);
    await reopened.close();
  });
});
