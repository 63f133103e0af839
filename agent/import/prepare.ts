// Reading, hashing and parsing the files of an import, on worker threads when the compiled worker
// is there (the main thread then only seals and commits), inline otherwise (tests run from source).
// Measured on 10,000 files: read + hash + parse took about 1.5 s of the main thread's 5 s.

import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { IncomingMessage, MessageMeta } from '../buffer/index.js';
import { parseFileMessages, readSettledFile, sha256Of, type FileProblemCode } from '../sources/file-drop/index.js';
import type { TreeEntry } from './walk.js';

export type PrepareFailure = { readonly code: FileProblemCode; readonly message: string };

export type Prepared =
  | { readonly kind: 'ok'; readonly bytes: Buffer; readonly sha256: Buffer; readonly messages: IncomingMessage[] }
  | { readonly kind: 'failed'; readonly failure: PrepareFailure };

/** Read, hash and parse one file (synchronous: the caller decides on which thread). */
export function prepareFile(entry: TreeEntry, sourceId: string, maxFileBytes: number, receivedAt: number): Prepared {
  if (entry.refused) return { kind: 'failed', failure: { code: entry.refused, message: entry.refused === 'symlink' ? 'symbolic links are not followed' : 'not a regular file' } };
  const read = readSettledFile(entry.abs, maxFileBytes);
  if (read.kind === 'gone') return { kind: 'failed', failure: { code: 'unreadable', message: 'the file disappeared during the import' } };
  if (read.kind === 'changed') return { kind: 'failed', failure: { code: 'unreadable', message: 'the file changed while it was read; run import again once nothing writes to it' } };
  if (read.kind === 'problem') return { kind: 'failed', failure: { code: read.problem.code, message: read.problem.message } };
  const parsed = parseFileMessages(read.bytes, sourceId, receivedAt);
  if (!parsed.ok) return { kind: 'failed', failure: { code: parsed.problem.code, message: parsed.problem.message } };
  return { kind: 'ok', bytes: read.bytes, sha256: sha256Of(read.bytes), messages: parsed.messages };
}

export interface Preparer {
  prepare(entry: TreeEntry): Promise<Prepared>;
  close(): Promise<void>;
}

/** What a worker sends back: the bytes (transferred) and each message as a span with its metadata. */
export type WorkerReply =
  | { readonly id: number; readonly kind: 'ok'; readonly bytes: Uint8Array; readonly sha256: Uint8Array; readonly spans: readonly { start: number; end: number; meta: MessageMeta }[] }
  | { readonly id: number; readonly kind: 'failed'; readonly failure: PrepareFailure };

export interface WorkerRequest {
  readonly id: number;
  readonly entry: TreeEntry;
  readonly receivedAt: number;
}

const WORKER_FILE = fileURLToPath(new URL('./prepare-worker.js', import.meta.url));

export function createPreparer(sourceId: string, maxFileBytes: number): Preparer {
  const threads = Math.max(1, Math.min(4, availableParallelism() - 1));
  if (!existsSync(WORKER_FILE)) {
    return { prepare: (entry) => Promise.resolve(prepareFile(entry, sourceId, maxFileBytes, Date.now())), close: () => Promise.resolve() };
  }
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_FILE, { workerData: { sourceId, maxFileBytes } }));
  const waiting = new Map<number, { resolve: (p: Prepared) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  for (const w of workers) {
    w.on('message', (reply: WorkerReply) => {
      const pending = waiting.get(reply.id);
      if (!pending) return;
      waiting.delete(reply.id);
      if (reply.kind === 'failed') {
        pending.resolve({ kind: 'failed', failure: reply.failure });
        return;
      }
      const bytes = Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength);
      const receivedAt = Date.now();
      pending.resolve({
        kind: 'ok',
        bytes,
        sha256: Buffer.from(reply.sha256.buffer, reply.sha256.byteOffset, reply.sha256.byteLength),
        messages: reply.spans.map((s) => ({ sourceId, payload: bytes.subarray(s.start, s.end), receivedAt, meta: s.meta })),
      });
    });
    w.on('error', (err) => {
      for (const p of waiting.values()) p.reject(err);
      waiting.clear();
    });
  }
  return {
    prepare(entry) {
      const id = nextId++;
      return new Promise<Prepared>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        const request: WorkerRequest = { id, entry, receivedAt: Date.now() };
        workers[id % workers.length]!.postMessage(request);
      });
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
