// `ferry-agent import DIR --source ID`: loads a tree of historical HL7 files into the buffer,
// through the file_drop parser, each file's messages committed with its hash in one transaction.
//
// Resumable: a file whose hash this source already committed is skipped (the same memory the
// file_drop source uses after a crash), so re-running after an interruption takes only the rest.
// Files are left in place. Throughput comes from group commit: many files are in flight at once
// (bounded by bytes), and the buffer packs all that arrive during one commit into the next.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Keyring, MessageBuffer, openTakenFileIndex } from '../buffer/index.js';
import { FerryError } from '../errors.js';
import { compileFileFilter, type FileProblemCode } from '../sources/file-drop/index.js';
import { createPreparer, prepareFile } from './prepare.js';
import { processesHolding } from './buffer-in-use.js';
import type { ImportProgress } from './progress.js';
import { walkTree, type TreeEntry } from './walk.js';

export interface ImportOptions {
  readonly dir: string;
  readonly sourceId: string;
  readonly include: readonly string[];
  readonly dryRun: boolean;
  readonly bufferFile: string;
  readonly keyFile: string;
  readonly maxBytes: number;
  readonly maxFileBytes: number;
  /** Called as files finish (the CLI draws its bar from it). */
  readonly onProgress?: (p: ImportProgress) => void;
  /** Called once per file with what happened to it (dry run: what would happen). */
  readonly onFile?: (f: FileOutcome) => void;
}

export type FileOutcome =
  | { readonly file: string; readonly status: 'taken'; readonly messages: number }
  | { readonly file: string; readonly status: 'already_imported' }
  | { readonly file: string; readonly status: 'failed'; readonly code: FileProblemCode | 'buffer_full' | 'commit_failed'; readonly message: string };

export interface ImportReport {
  readonly dryRun: boolean;
  readonly files: number;
  readonly taken: number;
  readonly alreadyImported: number;
  readonly failed: number;
  readonly messages: number;
  readonly bytes: number;
  readonly seconds: number;
  /** True when the buffer filled up: the rest was not taken (run the agent to deliver, then import again). */
  readonly stoppedFull: boolean;
}

/** Bytes of files read and waiting for their commit at once. */
const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
const MAX_FILES_IN_FLIGHT = 1024;
/** Files being read and parsed at once. */
const LANES = 16;

export async function runImport(options: ImportOptions): Promise<ImportReport> {
  const root = resolve(options.dir);
  const accept = compileFileFilter({ include: options.include, exclude: [], ignoreTemporary: true });
  const entries = await walkTree(root, accept).catch((err: NodeJS.ErrnoException) => {
    throw new FerryError('source_failed', `cannot read ${options.dir}: ${err.code ?? err.message}`, { cause: err });
  });
  if (!options.dryRun) {
    const holders = processesHolding(options.bufferFile);
    if (holders !== 'unknown' && holders.length > 0) {
      throw new FerryError(
        'buffer_io',
        `the buffer ${options.bufferFile} is open in another process (pid ${holders.join(', ')}), most likely the running agent; stop it (systemctl stop ferry-agent) and run import again`,
      );
    }
  }
  const started = Date.now();
  const totals = { files: entries.length, bytes: entries.reduce((n, e) => n + e.size, 0) };
  const state = { done: 0, bytesDone: 0, taken: 0, already: 0, failed: 0, messages: 0, stoppedFull: false };
  const progress = (): void =>
    options.onProgress?.({
      filesDone: state.done,
      filesTotal: totals.files,
      bytesDone: state.bytesDone,
      bytesTotal: totals.bytes,
      messages: state.messages,
      failed: state.failed,
      elapsedMs: Date.now() - started,
    });
  const record = (entry: TreeEntry, outcome: FileOutcome): void => {
    state.done++;
    state.bytesDone += entry.size;
    if (outcome.status === 'taken') {
      state.taken++;
      state.messages += outcome.messages;
    } else if (outcome.status === 'already_imported') state.already++;
    else state.failed++;
    options.onFile?.(outcome);
    progress();
  };

  if (options.dryRun) {
    const index = await openTakenFileIndex(options.bufferFile);
    try {
      for (const entry of entries) record(entry, await examine(entry, options, (sha) => index.has(options.sourceId, sha)));
    } finally {
      await index.close();
    }
  } else {
    mkdirSync(dirname(options.bufferFile), { recursive: true, mode: 0o700 });
    const buffer = await MessageBuffer.open({ path: options.bufferFile, keyring: Keyring.loadOrCreate(options.keyFile), maxBytes: options.maxBytes, maxDedupeWindowSecs: 1 });
    try {
      await importAll(entries, options, buffer, record, state);
    } finally {
      await buffer.close();
    }
  }
  progress();
  return {
    dryRun: options.dryRun,
    files: totals.files,
    taken: state.taken,
    alreadyImported: state.already,
    failed: state.failed,
    messages: state.messages,
    bytes: state.bytesDone,
    seconds: (Date.now() - started) / 1000,
    stoppedFull: state.stoppedFull,
  };
}

/** Dry run: what would happen to one file, touching nothing. */
async function examine(entry: TreeEntry, options: ImportOptions, taken: (sha: Buffer) => Promise<boolean>): Promise<FileOutcome> {
  const prepared = prepareFile(entry, options.sourceId, options.maxFileBytes, Date.now());
  if (prepared.kind === 'failed') return { file: entry.rel, status: 'failed', ...prepared.failure };
  if (await taken(prepared.sha256)) return { file: entry.rel, status: 'already_imported' };
  return { file: entry.rel, status: 'taken', messages: prepared.messages.length };
}

async function importAll(
  entries: readonly TreeEntry[],
  options: ImportOptions,
  buffer: MessageBuffer,
  record: (entry: TreeEntry, outcome: FileOutcome) => void,
  state: { stoppedFull: boolean },
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let bytesInFlight = 0;
  let failure: unknown;
  let next = 0;
  // A fresh import (nothing remembered for this source) skips the per-file lookup; the buffer
  // still refuses a second copy of the same bytes within the run (appendFile's own check).
  const lookUpEach = (await buffer.countTakenFiles(options.sourceId)) > 0;
  const preparer = createPreparer(options.sourceId, options.maxFileBytes);
  // Several files are being prepared at once (on worker threads when available); commits are not
  // awaited per file, so the buffer's group commit packs every file that arrives during one commit
  // into the next.
  const lane = async (): Promise<void> => {
    while (!state.stoppedFull && failure === undefined && next < entries.length) {
      const entry = entries[next++]!;
      while (inFlight.size > 0 && (bytesInFlight >= MAX_BYTES_IN_FLIGHT || inFlight.size >= MAX_FILES_IN_FLIGHT)) await Promise.race(inFlight);
      const prepared = await preparer.prepare(entry);
      if (prepared.kind === 'failed') {
        record(entry, { file: entry.rel, status: 'failed', ...prepared.failure });
        continue;
      }
      if (lookUpEach && (await buffer.takenFile(options.sourceId, prepared.sha256))) {
        record(entry, { file: entry.rel, status: 'already_imported' });
        continue;
      }
      const size = prepared.bytes.length;
      bytesInFlight += size;
      const p: Promise<void> = buffer
        .appendFile({ sourceId: options.sourceId, name: entry.rel, size, sha256: prepared.sha256 }, prepared.messages)
        .then(
          (result) => {
            if (result.status === 'committed') record(entry, { file: entry.rel, status: 'taken', messages: result.messages });
            else if (result.status === 'already_taken') record(entry, { file: entry.rel, status: 'already_imported' });
            else {
              state.stoppedFull = true;
              record(entry, { file: entry.rel, status: 'failed', code: 'buffer_full', message: result.status === 'full' ? 'the buffer is full (buffer.max_bytes)' : 'the buffer closed' });
            }
          },
          (err: unknown) => {
            failure = err;
            record(entry, { file: entry.rel, status: 'failed', code: 'commit_failed', message: err instanceof Error ? err.message : String(err) });
          },
        )
        .finally(() => {
          bytesInFlight -= size;
          inFlight.delete(p);
        });
      inFlight.add(p);
    }
  };
  try {
    await Promise.all(Array.from({ length: LANES }, lane));
    await Promise.all(inFlight);
  } finally {
    await preparer.close();
  }
  if (failure !== undefined) throw new FerryError('buffer_io', 'a commit to the buffer failed; nothing of the files in that commit was stored; run import again to continue', { cause: failure });
}
