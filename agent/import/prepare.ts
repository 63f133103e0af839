// Reading, hashing, parsing and sealing the files of an import, on worker threads when the compiled
// worker is there, inline otherwise (tests run from source). The main thread then only binds rows
// and commits: measured on 10,000 files x 10 messages, sealing and hashing on the main thread were
// its largest cost after SQLite's own binding.
//
// Seqs: a sealed payload's authenticated data names its seq, so a worker must know the seq before
// it seals. The import leases seq assignment from the buffer (MessageBuffer.leaseSeqs) and shares
// one counter between the workers; each request takes its turn in request order (SeqTurns), so
// request n's messages always get lower seqs than request n + 1's, and the preparer hands results
// back in request order: the buffer receives files in seq order, which is commit order.

import { hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Keyring, rowAad, type IncomingMessage, type MessageMeta } from '../buffer/index.js';
import { FerryError } from '../errors.js';
import { parseFileMessages, readSettledFile, sha256Of, type FileProblemCode } from '../sources/file-drop/index.js';
import type { TreeEntry } from './walk.js';

export type PrepareFailure = { readonly code: FileProblemCode; readonly message: string };

/** Read, hashed and parsed (dry run: nothing sealed). */
export type Parsed =
  | { readonly kind: 'ok'; readonly bytes: Buffer; readonly sha256: Buffer; readonly messages: IncomingMessage[] }
  | { readonly kind: 'failed'; readonly failure: PrepareFailure };

/** Ready for MessageBuffer.appendSealedFile, or why not. */
export type Prepared =
  | {
      readonly kind: 'sealed';
      readonly size: number;
      readonly sha256: Buffer;
      readonly firstSeq: number;
      readonly receivedAt: number;
      readonly sealed: Buffer[];
      readonly hashes: Buffer[];
      readonly sizes: number[];
      readonly meta: MessageMeta[];
    }
  /** Its hash is in the list of files this source took before the import started: no seq used. */
  | { readonly kind: 'already_imported' }
  | { readonly kind: 'failed'; readonly failure: PrepareFailure };

/** Read, hash and parse one file (synchronous: the caller decides on which thread). */
export function prepareFile(entry: TreeEntry, sourceId: string, maxFileBytes: number, receivedAt: number): Parsed {
  if (entry.refused) return { kind: 'failed', failure: { code: entry.refused, message: entry.refused === 'symlink' ? 'symbolic links are not followed' : 'not a regular file' } };
  const read = readSettledFile(entry.abs, maxFileBytes);
  if (read.kind === 'gone') return { kind: 'failed', failure: { code: 'unreadable', message: 'the file disappeared during the import' } };
  if (read.kind === 'changed') return { kind: 'failed', failure: { code: 'unreadable', message: 'the file changed while it was read; run import again once nothing writes to it' } };
  if (read.kind === 'problem') return { kind: 'failed', failure: { code: read.problem.code, message: read.problem.message } };
  const parsed = parseFileMessages(read.bytes, sourceId, receivedAt);
  if (!parsed.ok) return { kind: 'failed', failure: { code: parsed.problem.code, message: parsed.problem.message } };
  return { kind: 'ok', bytes: read.bytes, sha256: sha256Of(read.bytes), messages: parsed.messages };
}

/** What every preparer (worker or inline) needs to seal rows for one buffer. */
export interface SealSettings {
  readonly sourceId: string;
  readonly maxFileBytes: number;
  readonly keyFile: string;
  /** The key the main thread's buffer has active: a worker refuses to seal with another. */
  readonly keyId: string;
  readonly bufferId: string;
  /** SeqTurns' shared state (SeqTurns.create). */
  readonly seqState: SharedArrayBuffer;
  /** Sorted sha256s of the files this source took before (MessageBuffer.takenFileHashes). */
  readonly taken: SharedArrayBuffer;
}

/**
 * The shared seq counter, taken in request order: request n waits until n - 1 has taken its seqs.
 * The wait is short (the previous request only has to finish parsing), and only failed or skipped
 * files take none.
 */
export class SeqTurns {
  private readonly turn: Int32Array;
  private readonly next: BigInt64Array;

  constructor(state: SharedArrayBuffer) {
    this.turn = new Int32Array(state, 0, 1);
    this.next = new BigInt64Array(state, 8, 1);
  }

  static create(firstSeq: number): SharedArrayBuffer {
    const state = new SharedArrayBuffer(16);
    new BigInt64Array(state, 8, 1)[0] = BigInt(firstSeq);
    return state;
  }

  /** Takes `count` consecutive seqs for request `id`; returns the first. */
  take(id: number, count: number): number {
    for (;;) {
      const current = Atomics.load(this.turn, 0);
      if (current === id) break;
      if (current > id) throw new FerryError('buffer_io', `import request ${id} took its seqs twice`);
      // Bounded waits: a worker that died leaves the others able to notice termination.
      Atomics.wait(this.turn, 0, current, 1000);
    }
    const first = Atomics.load(this.next, 0);
    Atomics.store(this.next, 0, first + BigInt(count));
    Atomics.store(this.turn, 0, id + 1);
    Atomics.notify(this.turn, 0);
    return Number(first);
  }
}

/** Read, parse, hash and seal one file as request `id` (synchronous: runs on a worker, or inline). */
export class FileSealer {
  private readonly keyring: Keyring;
  private readonly turns: SeqTurns;
  private readonly taken: Buffer;

  constructor(private readonly settings: SealSettings) {
    this.keyring = Keyring.load(settings.keyFile);
    if (this.keyring.activeKeyId !== settings.keyId) {
      throw new FerryError('key_missing', `the key file's active key changed during the import (${settings.keyId} → ${this.keyring.activeKeyId}); run import again`);
    }
    this.turns = new SeqTurns(settings.seqState);
    this.taken = Buffer.from(settings.taken);
  }

  prepare(id: number, entry: TreeEntry): Prepared {
    const { sourceId, bufferId, keyId } = this.settings;
    // Whole seconds: files read within one second share it, and the buffer binds it once per
    // statement for a run of rows (MessageBuffer.runBulkInsert).
    const receivedAt = Math.floor(Date.now() / 1000) * 1000;
    let parsed: Parsed;
    try {
      parsed = prepareFile(entry, sourceId, this.settings.maxFileBytes, receivedAt);
    } catch (err) {
      this.turns.take(id, 0);
      throw err;
    }
    if (parsed.kind === 'failed') {
      this.turns.take(id, 0);
      return parsed;
    }
    if (this.wasTaken(parsed.sha256)) {
      this.turns.take(id, 0);
      return { kind: 'already_imported' };
    }
    const messages = parsed.messages;
    const n = messages.length;
    const firstSeq = this.turns.take(id, n);
    let total = 0;
    for (const m of messages) total += Keyring.sealedLength(m.payload.length);
    // One block for the file's sealed rows, one for their hashes: two transfers, no per-row copies.
    const block = Buffer.allocUnsafeSlow(total);
    const hashBlock = Buffer.allocUnsafeSlow(32 * n);
    const sealed: Buffer[] = [];
    const hashes: Buffer[] = [];
    const sizes: number[] = [];
    const meta: MessageMeta[] = [];
    let at = 0;
    for (let i = 0; i < n; i++) {
      const m = messages[i]!;
      hash('sha256', m.payload, 'buffer').copy(hashBlock, 32 * i);
      const len = this.keyring.sealInto(m.payload, rowAad(bufferId, firstSeq + i, sourceId, keyId), block, at);
      sealed.push(block.subarray(at, at + len));
      hashes.push(hashBlock.subarray(32 * i, 32 * i + 32));
      sizes.push(m.payload.length);
      meta.push(m.meta);
      at += len;
    }
    return { kind: 'sealed', size: parsed.bytes.length, sha256: parsed.sha256, firstSeq, receivedAt, sealed, hashes, sizes, meta };
  }

  /** Binary search in the sorted list of hashes taken before. */
  private wasTaken(sha256: Buffer): boolean {
    let lo = 0;
    let hi = this.taken.length / 32;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.taken.compare(sha256, 0, 32, mid * 32, mid * 32 + 32);
      if (c === 0) return true;
      if (c < 0) lo = mid + 1;
      else hi = mid;
    }
    return false;
  }
}

export interface Preparer {
  /** Resolves in call order (a later call never resolves before an earlier one). */
  prepare(entry: TreeEntry): Promise<Prepared>;
  close(): Promise<void>;
}

/** What a worker sends back: the sealed rows and hashes as two transferred blocks, headers flat. */
export type WorkerReply =
  | {
      readonly id: number;
      readonly kind: 'sealed';
      readonly size: number;
      readonly sha256: Uint8Array;
      readonly firstSeq: number;
      readonly receivedAt: number;
      readonly block: Uint8Array;
      readonly hashBlock: Uint8Array;
      /** Plaintext size of each message (its sealed blob is Keyring.sealedLength of it). */
      readonly sizes: readonly number[];
      /**
       * Six strings per message (type, trigger, control id, sending app, sending facility, version),
       * joined by META_SEPARATOR (one string clones far cheaper than sixty), or as an array when a
       * field holds the separator itself (UTF-8 EF BF BF in a header).
       */
      readonly meta: string | readonly string[];
    }
  | { readonly id: number; readonly kind: 'already_imported' }
  | { readonly id: number; readonly kind: 'failed'; readonly failure: PrepareFailure }
  | { readonly id: number; readonly kind: 'error'; readonly message: string };

export interface WorkerRequest {
  readonly id: number;
  readonly entry: TreeEntry;
}

/** A noncharacter: practically never in a header field (see WorkerReply.meta for when it is). */
const META_SEPARATOR = '\u{FFFF}';

const WORKER_FILE = fileURLToPath(new URL('./prepare-worker.js', import.meta.url));

export function createPreparer(settings: SealSettings): Preparer {
  if (!existsSync(WORKER_FILE)) {
    const sealer = new FileSealer(settings);
    let nextId = 0;
    return { prepare: (entry) => Promise.resolve().then(() => sealer.prepare(nextId++, entry)), close: () => Promise.resolve() };
  }
  // One core stays with the main thread and SQLite's. Measured on 2 cores: a second worker only
  // added CPU (turn waits, contention) and wall time.
  const threads = Math.max(1, Math.min(4, availableParallelism() - 1));
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_FILE, { workerData: settings }));
  const waiting = new Map<number, { resolve: (p: Prepared) => void; reject: (e: Error) => void }>();
  // Replies can arrive out of order (several workers); they are handed on in request order.
  const ready = new Map<number, { ok: Prepared } | { err: Error }>();
  let nextId = 0;
  let nextToSettle = 0;
  const settleInOrder = (): void => {
    for (let r = ready.get(nextToSettle); r !== undefined; r = ready.get(nextToSettle)) {
      const w = waiting.get(nextToSettle)!;
      ready.delete(nextToSettle);
      waiting.delete(nextToSettle);
      nextToSettle++;
      if ('ok' in r) w.resolve(r.ok);
      else w.reject(r.err);
    }
  };
  for (const w of workers) {
    w.on('message', (reply: WorkerReply) => {
      if (!waiting.has(reply.id)) return;
      ready.set(reply.id, reply.kind === 'error' ? { err: new FerryError('buffer_io', `import worker failed: ${reply.message}`) } : { ok: fromReply(reply) });
      settleInOrder();
    });
    w.on('error', (err) => {
      for (const p of waiting.values()) p.reject(err);
      waiting.clear();
      ready.clear();
    });
  }
  return {
    prepare(entry) {
      const id = nextId++;
      return new Promise<Prepared>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        const request: WorkerRequest = { id, entry };
        workers[id % workers.length]!.postMessage(request);
      });
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** A worker's answer for request `id`, and the blocks to transfer with it (both have their own ArrayBuffer: FileSealer allocates them outside the pool). */
export function toReply(id: number, prepared: Prepared): { reply: WorkerReply; transfer: ArrayBuffer[] } {
  if (prepared.kind !== 'sealed') return { reply: { id, ...prepared }, transfer: [] };
  const block = prepared.sealed[0]!.buffer as ArrayBuffer;
  const hashBlock = prepared.hashes[0]!.buffer as ArrayBuffer;
  const meta: string[] = [];
  for (const m of prepared.meta) meta.push(m.messageType, m.triggerEvent, m.controlId, m.sendingApplication, m.sendingFacility, m.version);
  const reply: WorkerReply = {
    id,
    kind: 'sealed',
    size: prepared.size,
    sha256: prepared.sha256,
    firstSeq: prepared.firstSeq,
    receivedAt: prepared.receivedAt,
    block: new Uint8Array(block),
    hashBlock: new Uint8Array(hashBlock),
    sizes: prepared.sizes,
    meta: meta.some((f) => f.includes(META_SEPARATOR)) ? meta : meta.join(META_SEPARATOR),
  };
  return { reply, transfer: [block, hashBlock] };
}

/** toReply() read back on the main thread: views over the transferred blocks, headers rebuilt. */
function fromReply(reply: Exclude<WorkerReply, { kind: 'error' }>): Prepared {
  if (reply.kind !== 'sealed') return reply.kind === 'failed' ? { kind: 'failed', failure: reply.failure } : { kind: 'already_imported' };
  const block = Buffer.from(reply.block.buffer, reply.block.byteOffset, reply.block.byteLength);
  const hashBlock = Buffer.from(reply.hashBlock.buffer, reply.hashBlock.byteOffset, reply.hashBlock.byteLength);
  const n = reply.sizes.length;
  const fields = typeof reply.meta === 'string' ? reply.meta.split(META_SEPARATOR) : reply.meta;
  const sealed: Buffer[] = new Array<Buffer>(n);
  const hashes: Buffer[] = new Array<Buffer>(n);
  const meta: MessageMeta[] = new Array<MessageMeta>(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const len = Keyring.sealedLength(reply.sizes[i]!);
    sealed[i] = block.subarray(at, at + len);
    hashes[i] = hashBlock.subarray(32 * i, 32 * i + 32);
    const m = 6 * i;
    meta[i] = { messageType: fields[m]!, triggerEvent: fields[m + 1]!, controlId: fields[m + 2]!, sendingApplication: fields[m + 3]!, sendingFacility: fields[m + 4]!, version: fields[m + 5]! };
    at += len;
  }
  return {
    kind: 'sealed',
    size: reply.size,
    sha256: Buffer.from(reply.sha256.buffer, reply.sha256.byteOffset, reply.sha256.byteLength),
    firstSeq: reply.firstSeq,
    receivedAt: reply.receivedAt,
    sealed,
    hashes,
    sizes: reply.sizes as number[],
    meta,
  };
}
