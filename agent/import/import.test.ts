// `runImport` against a real buffer: every message of every file once, a resumed import takes only
// what is missing, a dry run changes nothing, bad files are reported per file, and the import
// refuses to run while another process holds the buffer open.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Keyring, MessageBuffer } from '../buffer/index.js';
import { countByControlId, readBufferRows } from '../../test/helpers/buffer-db.js';
import { writeHl7Tree } from '../../test/helpers/hl7-tree.js';
import { readSample } from '../../test/helpers/samples.js';
import { runImport, type FileOutcome, type ImportOptions } from './import.js';
import { formatProgress } from './progress.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setUp(): { dir: string; tree: string; options: Omit<ImportOptions, 'dryRun'> } {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-import-'));
  dirs.push(dir);
  const tree = join(dir, 'tree');
  return {
    dir,
    tree,
    options: { dir: tree, sourceId: 'legacy-2019', include: ['**/*.hl7'], bufferFile: join(dir, 'buffer.db'), keyFile: join(dir, 'keys.json'), maxBytes: 1024 ** 3, maxFileBytes: 1024 * 1024 },
  };
}

describe('import', () => {
  it('imports every message of every file once, and a second run skips them all', async () => {
    const { dir, tree, options } = setUp();
    const files = writeHl7Tree(tree, { files: 120, perFile: 5, prefix: 'IMP-', folders: 4, terminator: '\n' });
    const first = await runImport({ ...options, dryRun: false });
    expect(first).toMatchObject({ files: 120, taken: 120, alreadyImported: 0, failed: 0, messages: 600 });
    const second = await runImport({ ...options, dryRun: false });
    expect(second).toMatchObject({ files: 120, taken: 0, alreadyImported: 120, failed: 0, messages: 0 });
    const rows = await readBufferRows(join(dir, 'buffer.db'));
    const byId = countByControlId(rows);
    expect(rows.length).toBe(600);
    for (const f of files) for (const id of f.controlIds) expect(byId.get(id)?.length, id).toBe(1);
    // Files are left in place.
    for (const f of files) expect(existsSync(join(tree, f.rel))).toBe(true);
    // Each file's messages have consecutive seqs, and the payloads are the file's bytes.
    const keyring = Keyring.load(join(dir, 'keys.json'));
    const buffer = await MessageBuffer.open({ path: join(dir, 'buffer.db'), keyring, maxBytes: 1024 ** 3 });
    try {
      const stored = await buffer.readOldest(0, 1000);
      for (const f of files) {
        const at = stored.findIndex((m) => m.meta.controlId === f.controlIds[0]);
        const mine = stored.slice(at, at + 5);
        expect(mine.map((m) => m.meta.controlId)).toEqual(f.controlIds);
        expect(mine.map((m) => m.seq)).toEqual([0, 1, 2, 3, 4].map((i) => stored[at]!.seq + i));
        expect(Buffer.concat(mine.map((m) => m.payload)).equals(f.bytes)).toBe(true);
      }
    } finally {
      await buffer.close();
    }
  });

  it('resumes: files committed before an interruption are skipped, the rest taken, nothing twice', async () => {
    const { dir, tree, options } = setUp();
    const files = writeHl7Tree(tree, { files: 60, perFile: 3, prefix: 'RES-' });
    // An interrupted run: the first 25 files only (as if the process died there).
    const keyring = Keyring.loadOrCreate(options.keyFile);
    const buffer = await MessageBuffer.open({ path: options.bufferFile, keyring, maxBytes: 1024 ** 3 });
    const { parseFileMessages, sha256Of } = await import('../sources/file-drop/index.js');
    for (const f of files.slice(0, 25)) {
      const parsed = parseFileMessages(f.bytes, 'legacy-2019', Date.now());
      if (!parsed.ok) throw new Error('tree file must parse');
      await buffer.appendFile({ sourceId: 'legacy-2019', name: f.rel, size: f.bytes.length, sha256: sha256Of(f.bytes) }, parsed.messages);
    }
    await buffer.close();
    const report = await runImport({ ...options, dryRun: false });
    expect(report).toMatchObject({ taken: 35, alreadyImported: 25, failed: 0, messages: 105 });
    const byId = countByControlId(await readBufferRows(join(dir, 'buffer.db')));
    for (const f of files) for (const id of f.controlIds) expect(byId.get(id)?.length, id).toBe(1);
    expect(byId.size).toBe(180);
  });

  it('dry run reports per file what would be taken and what would fail, and touches nothing', async () => {
    const { dir, tree, options } = setUp();
    writeHl7Tree(tree, { files: 3, perFile: 2, prefix: 'DRY-' });
    writeFileSync(join(tree, 'junk.hl7'), Buffer.from([0, 1, 2, 3, 255, 254]));
    writeFileSync(join(tree, 'empty.hl7'), '');
    writeFileSync(join(tree, 'batch.hl7'), readSample('fhs-bhs_v2.5_pyhl7-2batches.batch.hl7'));
    writeFileSync(join(tree, 'notes.txt'), 'not included');
    symlinkSync(join(tree, 'f000000.hl7'), join(tree, 'link.hl7'));
    const outcomes: FileOutcome[] = [];
    const report = await runImport({ ...options, dryRun: true, onFile: (f) => outcomes.push(f) });
    expect(existsSync(join(dir, 'buffer.db'))).toBe(false);
    const byFile = Object.fromEntries(outcomes.map((o) => [o.file, o.status === 'failed' ? o.code : o.status]));
    expect(byFile).toEqual({ 'batch.hl7': 'taken', 'empty.hl7': 'empty', 'f000000.hl7': 'taken', 'f000001.hl7': 'taken', 'f000002.hl7': 'taken', 'junk.hl7': 'no_msh', 'link.hl7': 'symlink' });
    expect(report).toMatchObject({ dryRun: true, files: 7, taken: 4, failed: 3 });
    // After a real import the dry run says "already imported".
    await runImport({ ...options, dryRun: false });
    const again: FileOutcome[] = [];
    await runImport({ ...options, dryRun: true, onFile: (f) => again.push(f) });
    expect(again.filter((o) => o.status === 'already_imported').length).toBe(4);
  });

  it('refuses to run while another process holds the buffer open (the agent), saying which', async () => {
    const { tree, options } = setUp();
    writeHl7Tree(tree, { files: 2, perFile: 1, prefix: 'BUSY-' });
    await runImport({ ...options, dryRun: false });
    const holder = spawn(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(options.bufferFile)}, 'r'); console.log('open'); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((res) => holder.stdout.once('data', () => res()));
      await expect(runImport({ ...options, dryRun: false })).rejects.toThrow(new RegExp(`open in another process \\(pid ${holder.pid}\\)`));
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('progress line shows files, messages, MB/s and ETA', () => {
    const line = formatProgress({ filesDone: 50, filesTotal: 100, bytesDone: 5e6, bytesTotal: 10e6, messages: 500, failed: 1, elapsedMs: 2000 });
    expect(line).toContain('50/100 files');
    expect(line).toContain('500 msgs');
    expect(line).toContain('2.5 MB/s');
    expect(line).toContain('ETA 2s');
    expect(line).toContain('1 failed');
  });
});
