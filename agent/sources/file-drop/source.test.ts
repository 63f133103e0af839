// The file_drop source against a real buffer and real folders: corpus files end in the buffer with
// their bytes and control ids, partial writes are never read half, renames are taken at once, bad
// files end in error_dir with a reason, duplicates and crash leftovers are archived without storing.

import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileDropSourceSchema } from '../../../proto/policy/index.js';
import { makeTestBed, waitFor, type TestBed } from '../../../test/helpers/file-drop-bed.js';
import { loadManifest, readSample } from '../../../test/helpers/samples.js';
import { parseFileMessages, sha256Of } from './parse-file.js';
import { FileDropSource } from './source.js';

const beds: { bed: TestBed; source?: FileDropSource }[] = [];

afterEach(async () => {
  for (const b of beds.splice(0)) {
    await b.source?.stop(Date.now() + 5000);
    await b.bed.buffer.close();
    rmSync(b.bed.dir, { recursive: true, force: true });
  }
});

async function setUp(options: Record<string, unknown> = {}, bedOptions: { maxBytes?: number } = {}): Promise<{ bed: TestBed; source: FileDropSource; inbox: string; archive: string; errors: string }> {
  const bed = await makeTestBed('ferry-fd-', bedOptions);
  const inbox = join(bed.dir, 'inbox');
  const archive = join(bed.dir, 'archive');
  const errors = join(bed.dir, 'error');
  mkdirSync(inbox);
  const config = fileDropSourceSchema.parse({ id: 'drop', type: 'file_drop', path: inbox, archive_dir: archive, error_dir: errors, stable_secs: 0.3, ...options });
  const source = new FileDropSource(config, { buffer: bed.buffer, log: bed.log, metrics: bed.metrics });
  beds.push({ bed, source });
  return { bed, source, inbox, archive, errors };
}

function listTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('file_drop source', () => {
  it('takes every corpus file: each message stored once with its control id and exact bytes, every file archived', async () => {
    const { bed, source, inbox, archive } = await setUp();
    await source.start();
    const manifest = loadManifest();
    for (const e of manifest) writeFileSync(join(inbox, e.file), readSample(e.file));
    const expectedMessages = manifest.reduce((n, e) => n + e.messages, 0);
    await waitFor('all corpus files archived', () => listTree(archive).length === manifest.length && source.counters().pending === 0);

    const stored = await bed.buffer.readOldest(0, 10_000);
    expect(stored.length).toBe(expectedMessages);
    expect(listTree(inbox)).toEqual([]);
    expect(listTree(archive)).toEqual(manifest.map((e) => e.file).sort());
    // Group rows by file: each file's messages are consecutive, in file order, byte for byte.
    const bySha = new Map(stored.map((m) => [m.sha256.toString('hex'), m]));
    for (const e of manifest) {
      const bytes = readSample(e.file);
      const parsed = parseFileMessages(bytes, 'drop', 0);
      expect(parsed.ok, e.file).toBe(true);
      if (!parsed.ok) continue;
      const taken = await bed.buffer.takenFile('drop', sha256Of(bytes));
      expect(taken?.messages, e.file).toBe(e.messages);
      for (let i = 0; i < parsed.messages.length; i++) {
        const m = parsed.messages[i]!;
        const row = stored.find((s) => s.seq === taken!.firstSeq + i);
        expect(row, `${e.file} message ${i + 1}`).toBeDefined();
        expect(row!.payload.equals(m.payload), `${e.file} message ${i + 1} bytes`).toBe(true);
        expect(row!.meta.controlId).toBe(m.meta.controlId);
        expect(bySha.has(createHash('sha256').update(m.payload).digest('hex'))).toBe(true);
      }
      if (e.messages === 1) expect(stored.find((s) => s.seq === taken!.firstSeq)!.meta.controlId).toBe(e.controlId);
      expect(await bed.buffer.takenFileName('drop', sha256Of(bytes))).toBe(e.file);
    }
    const c = source.counters();
    expect(c).toMatchObject({ filesTaken: manifest.length, filesArchived: manifest.length, filesErrored: 0, messages: expectedMessages });
    // Nothing of a file's content or its name reaches a log line at info or above.
    const loud = bed.lines.filter((l) => l.level !== 'debug').map((l) => JSON.stringify(l));
    for (const e of manifest) expect(loud.join('\n')).not.toContain(e.file);
  });

  it('a file written slowly in pieces is taken once, whole', async () => {
    const { bed, source, inbox, archive } = await setUp({ stable_secs: 1.5 });
    await source.start();
    const bytes = readSample('mirth-TestADT-124msgs.batch.hl7');
    const file = join(inbox, 'slow.hl7');
    const pieces = 8;
    const step = Math.ceil(bytes.length / pieces);
    for (let at = 0; at < bytes.length; at += step) {
      appendFileSync(file, bytes.subarray(at, Math.min(bytes.length, at + step)));
      await new Promise((r) => setTimeout(r, 150));
    }
    await waitFor('slow file archived', () => listTree(archive).length === 1 && source.counters().pending === 0);
    const stored = await bed.buffer.readOldest(0, 10_000);
    expect(stored.length).toBe(124);
    expect(Buffer.concat(stored.map((m) => m.payload)).length).toBeLessThanOrEqual(bytes.length);
    expect(source.counters()).toMatchObject({ filesTaken: 1, filesErrored: 0, filesDuplicate: 0 });
    expect(readFileSync(join(archive, 'slow.hl7')).equals(bytes)).toBe(true);
  });

  it('a file renamed into place from a temporary name is taken at once (no stability wait)', async () => {
    const { bed, source, inbox, archive } = await setUp({ stable_secs: 60 });
    await source.start();
    const bytes = readSample('adt-a01_v2.4_hapi-docs.hl7');
    writeFileSync(join(inbox, 'incoming.hl7.part'), bytes);
    await waitFor('temporary file noticed', () => bed.lines.some((l) => l.msg?.toString().startsWith('temporary file seen')));
    renameSync(join(inbox, 'incoming.hl7.part'), join(inbox, 'incoming.hl7'));
    // Far less than stable_secs (60 s): taken because it was renamed in.
    await waitFor('renamed file archived', () => listTree(archive).includes('incoming.hl7'), 20_000);
    expect((await bed.buffer.readOldest(0, 10))[0]!.payload.equals(bytes)).toBe(true);
  });

  it('bad files end in error_dir with a reason (binary junk, empty, over the cap, symlink outside); good files are still taken', async () => {
    const { bed, source, inbox, archive, errors } = await setUp({ max_file_bytes: 4096 });
    const outside = join(bed.dir, 'secret.hl7');
    writeFileSync(outside, readSample('adt-a01_v2.4_hapi-docs.hl7'));
    writeFileSync(join(inbox, 'junk.bin'), Buffer.from(Array.from({ length: 2000 }, (_, i) => (i * 131 + 7) % 256)));
    writeFileSync(join(inbox, 'empty.hl7'), '');
    writeFileSync(join(inbox, 'big.hl7'), Buffer.concat([readSample('adt-a01_v2.4_hapi-docs.hl7'), Buffer.alloc(5000, 0x41)]));
    symlinkSync(outside, join(inbox, 'link.hl7'));
    writeFileSync(join(inbox, 'good.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    await source.start();
    const expectedErrors = ['big.hl7', 'big.hl7.reason.json', 'empty.hl7', 'empty.hl7.reason.json', 'junk.bin', 'junk.bin.reason.json', 'link.hl7', 'link.hl7.reason.json'];
    await waitFor('four files in error_dir with reasons, one archived', () => JSON.stringify(listTree(errors)) === JSON.stringify(expectedErrors) && listTree(archive).length === 1 && source.counters().pending === 0);

    const reason = (name: string): { source_id: string; file: string; error: { code: string; message: string } } => JSON.parse(readFileSync(join(errors, `${name}.reason.json`), 'utf8')) as never;
    expect(reason('junk.bin').error.code).toBe('no_msh');
    expect(reason('empty.hl7').error.code).toBe('empty');
    expect(reason('big.hl7').error.code).toBe('too_large');
    expect(reason('link.hl7').error.code).toBe('symlink');
    expect(reason('junk.bin')).toMatchObject({ source_id: 'drop', file: 'junk.bin' });
    // Reason files never hold content.
    expect(readFileSync(join(errors, 'big.hl7.reason.json'), 'utf8')).not.toContain('MSH|');
    // The symlink's target is untouched, and nothing of the bad files is stored.
    expect(readFileSync(outside).equals(readSample('adt-a01_v2.4_hapi-docs.hl7'))).toBe(true);
    const stored = await bed.buffer.readOldest(0, 100);
    expect(stored.map((m) => m.payload.equals(readSample('orm-o01_v2.4_mirth.hl7')))).toEqual([true]);
    expect(source.counters()).toMatchObject({ filesTaken: 1, filesErrored: 3, filesRefused: 1 });
  });

  it('a file whose hash is already committed (crash between commit and move) is archived without storing again', async () => {
    const { bed, source, inbox, archive } = await setUp();
    const bytes = readSample('fhs-bhs_v2.5.1_prs-20msgs-utf8.batch.hl7');
    const parsed = parseFileMessages(bytes, 'drop', Date.now());
    if (!parsed.ok) throw new Error('sample must parse');
    const first = await bed.buffer.appendFile({ sourceId: 'drop', name: 'left.hl7', size: bytes.length, sha256: sha256Of(bytes) }, parsed.messages);
    expect(first.status).toBe('committed');
    writeFileSync(join(inbox, 'left.hl7'), bytes);
    // Same bytes under a second name: a resend of the same file, stored once as well.
    writeFileSync(join(inbox, 'again.hl7'), bytes);
    await source.start();
    await waitFor('both archived', () => listTree(archive).length === 2 && source.counters().pending === 0);
    expect((await bed.buffer.readOldest(0, 1000)).length).toBe(parsed.messages.length);
    expect(source.counters()).toMatchObject({ filesTaken: 0, filesDuplicate: 2, filesArchived: 2 });
  });

  it('archive collisions never overwrite: a second file with the same name gets a new name', async () => {
    const { source, inbox, archive } = await setUp();
    mkdirSync(archive, { recursive: true });
    writeFileSync(join(archive, 'a.hl7'), 'earlier archive\n');
    writeFileSync(join(inbox, 'a.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    await source.start();
    await waitFor('archived under a new name', () => listTree(archive).length === 2);
    expect(readFileSync(join(archive, 'a.hl7'), 'utf8')).toBe('earlier archive\n');
    expect(readFileSync(join(archive, 'a-1.hl7')).equals(readSample('orm-o01_v2.4_mirth.hl7'))).toBe(true);
  });

  it('pauses while the buffer is full (files stay), and resumes by itself once there is room', async () => {
    const sample = readSample('adt-a01_v2.4_hapi-docs.hl7');
    const files = Array.from({ length: 5 }, (_, i) => Buffer.concat([sample, Buffer.from(`NTE|${i}\r`)]));
    const { bed, source, inbox, archive } = await setUp({}, { maxBytes: files[0]!.length * 2 + 10 });
    files.forEach((bytes, i) => writeFileSync(join(inbox, `f${i}.hl7`), bytes));
    await source.start();
    await waitFor('paused on a full buffer after two files', () => source.counters().paused === 1 && listTree(archive).length === 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(listTree(archive).length).toBe(2);
    expect(listTree(inbox).length).toBe(3);
    // Delivery makes room: the source resumes on its own.
    const rows = await bed.buffer.readOldest(0, 10);
    await bed.buffer.deleteThrough(rows[rows.length - 1]!.seq);
    await waitFor('two more taken', () => listTree(archive).length === 4, 60_000);
    const rows2 = await bed.buffer.readOldest(0, 10);
    await bed.buffer.deleteThrough(rows2[rows2.length - 1]!.seq);
    await waitFor('all taken', () => listTree(archive).length === 5 && source.counters().pending === 0, 60_000);
    expect(source.counters()).toMatchObject({ filesTaken: 5, paused: 0 });
  });

  it('polling mode (network shares) takes files too, and a sub-folder of a flat folder is left alone', async () => {
    const { bed, source, inbox, archive } = await setUp({ polling: true, poll_interval_secs: 0.2 });
    mkdirSync(join(inbox, 'sub'));
    await source.start();
    writeFileSync(join(inbox, 'p.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    await waitFor('archived by the polling watcher', () => listTree(archive).includes('p.hl7') && source.counters().pending === 0).catch((err: Error) => {
      throw new Error(`${err.message}\ncounters ${JSON.stringify(source.counters())}\ninbox ${listTree(inbox).join(',')}\n${bed.lines.map((l) => JSON.stringify(l)).join('\n')}`);
    });
    expect((await bed.buffer.readOldest(0, 10)).length).toBe(1);
    expect(existsSync(join(inbox, 'sub'))).toBe(true);
    expect(source.counters()).toMatchObject({ filesTaken: 1, filesErrored: 0, filesRefused: 0 });
  });

  it('flat folder: a sub-folder is not a file to take (nor an error)', async () => {
    const { source, inbox, archive } = await setUp();
    mkdirSync(join(inbox, 'sub'));
    writeFileSync(join(inbox, 'sub', 'deep.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    writeFileSync(join(inbox, 'top.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    await source.start();
    await waitFor('top file archived', () => listTree(archive).includes('top.hl7') && source.counters().pending === 0);
    expect(existsSync(join(inbox, 'sub', 'deep.hl7'))).toBe(true);
    expect(source.counters()).toMatchObject({ filesSeen: 1, filesTaken: 1, filesErrored: 0, filesRefused: 0 });
  });

  it('recursive: files in subfolders are taken (archived under the same relative path); an archive inside the folder is left out', async () => {
    const bed = await makeTestBed('ferry-fd-');
    const inbox = join(bed.dir, 'inbox');
    mkdirSync(join(inbox, 'ward', 'a'), { recursive: true });
    const config = fileDropSourceSchema.parse({ id: 'drop', type: 'file_drop', path: inbox, archive_dir: join(inbox, 'done'), error_dir: join(inbox, 'bad'), recursive: true, stable_secs: 0.2, include: ['**/*.hl7'] });
    const source = new FileDropSource(config, { buffer: bed.buffer, log: bed.log, metrics: bed.metrics });
    beds.push({ bed, source });
    writeFileSync(join(inbox, 'ward', 'a', 'x.hl7'), readSample('orm-o01_v2.4_mirth.hl7'));
    writeFileSync(join(inbox, 'ward', 'notes.txt'), 'not included');
    await source.start();
    await waitFor('archived', () => existsSync(join(inbox, 'done', 'ward', 'a', 'x.hl7')));
    // Give a wrongly watched archive a chance to be taken again; it must not be.
    await new Promise((r) => setTimeout(r, 800));
    expect(source.counters()).toMatchObject({ filesTaken: 1, filesDuplicate: 0, filesSeen: 1 });
    expect(existsSync(join(inbox, 'ward', 'notes.txt'))).toBe(true);
  });
});
