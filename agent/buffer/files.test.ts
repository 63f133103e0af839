// appendFile: a file's messages and its `files` row commit together, with consecutive seqs; the
// same bytes from the same source are stored once (in the table, or earlier in the same commit);
// MLLP appends queued around it keep seq order = commit order.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Keyring } from './keyring.js';
import { MessageBuffer, rowAad, type IncomingMessage, type SealedFileAppend } from './buffer.js';
import { checkBuffer } from './check.js';
import { all, close, openDatabase } from './sqlite.js';
import { sha256Of } from '../sources/file-drop/parse-file.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function openBuffer(): Promise<{ buffer: MessageBuffer; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-files-'));
  dirs.push(dir);
  const buffer = await MessageBuffer.open({ path: join(dir, 'b.db'), keyring: Keyring.loadOrCreate(join(dir, 'k.json')), maxBytes: 1024 ** 3 });
  return { buffer, dir };
}

function msg(sourceId: string, id: string): IncomingMessage {
  return {
    sourceId,
    payload: Buffer.from(`MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${id}|P|2.5\r`),
    receivedAt: Date.now(),
    meta: { messageType: 'ADT', triggerEvent: 'A01', controlId: id, sendingApplication: 'A', sendingFacility: 'B', version: '2.5' },
  };
}

describe('buffer files', () => {
  it('commits a file whole with consecutive seqs, remembers it, and stores the same bytes once', async () => {
    const { buffer } = await openBuffer();
    try {
      const sha = sha256Of(Buffer.from('file-1'));
      const other = sha256Of(Buffer.from('file-2'));
      // Queued together: an MLLP append, a file, the same file again under another name, another file, an MLLP append.
      const results = await Promise.all([
        buffer.append([msg('mllp', 'M1')]),
        buffer.appendFile({ sourceId: 'drop', name: 'a.hl7', size: 6, sha256: sha }, [msg('drop', 'F1'), msg('drop', 'F2'), msg('drop', 'F3')]),
        buffer.appendFile({ sourceId: 'drop', name: 'copy-of-a.hl7', size: 6, sha256: sha }, [msg('drop', 'F1'), msg('drop', 'F2'), msg('drop', 'F3')]),
        buffer.appendFile({ sourceId: 'drop', name: 'b.hl7', size: 6, sha256: other }, [msg('drop', 'G1')]),
        buffer.append([msg('mllp', 'M2')]),
      ]);
      const a = results[1] as { status: string; firstSeq: number };
      expect(a).toMatchObject({ status: 'committed', messages: 3 });
      expect(results[2]).toEqual({ status: 'already_taken', firstSeq: a.firstSeq });
      const rows = await buffer.readOldest(0, 100);
      expect(rows.map((r) => r.meta.controlId)).toEqual(['M1', 'F1', 'F2', 'F3', 'G1', 'M2']);
      // Seqs strictly increasing in commit order; the file's three are consecutive.
      const seqs = rows.map((r) => r.seq);
      expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
      expect(seqs.slice(1, 4)).toEqual([a.firstSeq, a.firstSeq + 1, a.firstSeq + 2]);
      expect(await buffer.takenFile('drop', sha)).toMatchObject({ messages: 3, firstSeq: a.firstSeq, size: 6 });
      expect(await buffer.takenFile('other-source', sha)).toBeUndefined();
      expect(await buffer.takenFileName('drop', sha)).toBe('a.hl7');
      // Later (a crash between commit and archive, a resend): found in the table, nothing stored.
      expect(await buffer.appendFile({ sourceId: 'drop', name: 'a.hl7', size: 6, sha256: sha }, [msg('drop', 'F1'), msg('drop', 'F2'), msg('drop', 'F3')])).toEqual({ status: 'already_taken', firstSeq: a.firstSeq });
      // The same bytes for another source are that source's own file.
      expect((await buffer.appendFile({ sourceId: 'legacy', name: 'a.hl7', size: 6, sha256: sha }, [msg('legacy', 'F1')])).status).toBe('committed');
      expect((await buffer.readOldest(0, 100)).length).toBe(7);
      // Delivered and deleted: the memory stays.
      await buffer.deleteThrough(buffer.stats().lastSeq);
      expect(await buffer.takenFile('drop', sha)).toBeDefined();
      expect(await buffer.pruneFiles('drop', -60_000)).toBe(2);
      expect(await buffer.takenFile('drop', sha)).toBeUndefined();
      expect(await buffer.takenFile('legacy', sha)).toBeDefined();
    } finally {
      await buffer.close();
    }
  });

  it('appendSealedFile: rows sealed elsewhere with leased seqs, in seq order only; the bulk statement stores what appendFile stores', async () => {
    const { buffer, dir } = await openBuffer();
    const keyring = Keyring.load(join(dir, 'k.json'));
    const sealedFile = (name: string, firstSeq: number, ids: string[], receivedAt: number): SealedFileAppend => {
      const payloads = ids.map((id) => msg('legacy', id).payload);
      return {
        file: { sourceId: 'legacy', name, size: 100, sha256: sha256Of(Buffer.from(name)) },
        keyId: keyring.activeKeyId,
        firstSeq,
        receivedAt,
        sealed: payloads.map((p, i) => keyring.seal(p, rowAad(buffer.bufferId, firstSeq + i, 'legacy', keyring.activeKeyId))),
        sha256: payloads.map((p) => createHash('sha256').update(p).digest()),
        sizes: payloads.map((p) => p.length),
        meta: ids.map((id) => msg('legacy', id).meta),
      };
    };
    const ids = Array.from({ length: 300 }, (_, i) => `L${i}`);
    try {
      await buffer.append([msg('mllp', 'M1')]);
      // Refused before the lease: seqs are the buffer's own.
      expect(() => buffer.appendSealedFile(sealedFile('x.hl7', 2, ['X1'], 1))).toThrow(/leased/);
      const first = buffer.leaseSeqs();
      expect(first).toBe(2);
      // Appends that would take seqs the bulk writer gave out are refused from now on.
      await expect(buffer.append([msg('mllp', 'M2')])).rejects.toThrow(/bulk writer/);
      // 300 messages in one file (two bulk statements), a gap of 5 seqs (a file that took seqs and
      // was never handed in), a file with another received_at, and the first file again (another name).
      const results = await Promise.all([
        buffer.appendSealedFile(sealedFile('a.hl7', first, ids, 1000)),
        buffer.appendSealedFile(sealedFile('b.hl7', first + 305, ['B1', 'B2'], 2000)),
        buffer.appendSealedFile({ ...sealedFile('a.hl7', first + 307, ids, 3000), file: { ...sealedFile('a.hl7', first, ids, 1000).file, name: 'copy.hl7' } }),
      ]);
      expect(results).toEqual([
        { status: 'committed', firstSeq: first, messages: 300 },
        { status: 'committed', firstSeq: first + 305, messages: 2 },
        { status: 'already_taken', firstSeq: first },
      ]);
      // Out of order: a seq below one already handed in is a bug, refused at once.
      expect(() => buffer.appendSealedFile(sealedFile('c.hl7', first + 306, ['C1'], 1))).toThrow(/in order/);
      const rows = await buffer.readOldest(0, 1000);
      expect(rows.map((r) => r.meta.controlId)).toEqual(['M1', ...ids, 'B1', 'B2']);
      expect(rows.map((r) => r.seq)).toEqual([1, ...ids.map((_, i) => first + i), first + 305, first + 306]);
      expect(rows[1]!.payload.equals(msg('legacy', 'L0').payload)).toBe(true);
      expect(await buffer.takenFileName('legacy', sha256Of(Buffer.from('a.hl7')))).toBe('a.hl7');
      // The duplicate's seqs were handed in, so they count as used (a gap, as after any duplicate).
      expect(buffer.stats()).toMatchObject({ depth: 303, lastSeq: first + 307 + 299 });
    } finally {
      await buffer.close();
    }
    // The columns bound once per statement came out per row: size, received_at, key, source, dedupe.
    const db = await openDatabase(join(dir, 'b.db'), true);
    try {
      const stored = await all<{ seq: number; control_id: string; size: number; received_at: number; source_id: string; key_id: string; dedupe: number }>(
        db,
        'SELECT seq, control_id, size, received_at, source_id, key_id, dedupe FROM messages WHERE seq > 1 ORDER BY seq',
      );
      expect(stored.length).toBe(302);
      for (const r of stored) {
        expect(r).toMatchObject({ size: msg('legacy', r.control_id).payload.length, source_id: 'legacy', key_id: keyring.activeKeyId, dedupe: 0 });
        expect(r.received_at).toBe(r.control_id.startsWith('B') ? 2000 : 1000);
      }
      expect(await all<{ total: number }>(db, 'SELECT SUM(size) AS total FROM messages WHERE seq > 1')).toEqual([
        { total: [...ids, 'B1', 'B2'].reduce((n, id) => n + msg('legacy', id).payload.length, 0) },
      ]);
    } finally {
      await close(db);
    }
    // Every row opens with its key and matches its hash (AAD binds seq, source, key).
    const report = await checkBuffer(join(dir, 'b.db'), keyring);
    expect(report).toMatchObject({ ok: true, rows: 303, failures: [] });
  });
});
