// appendFile: a file's messages and its `files` row commit together, with consecutive seqs; the
// same bytes from the same source are stored once (in the table, or earlier in the same commit);
// MLLP appends queued around it keep seq order = commit order.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Keyring } from './keyring.js';
import { MessageBuffer, type IncomingMessage } from './buffer.js';
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
});
