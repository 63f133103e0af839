// The durable, encrypted store-and-forward buffer.
//
// Writes go through one connection and one loop: every append that arrives while a commit is in
// flight joins the next commit (group commit), so one fsync covers many messages. A promise returned
// by append() resolves only after the COMMIT holding its messages has returned from SQLite with
// synchronous=FULL, which is what lets a source acknowledge. Reads for the uplink use a second
// connection so they never see a transaction that is still open.

import { createHash, randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import type sqlite3 from 'sqlite3';
import { FerryError } from '../errors.js';
import type { HeaderMetadata } from '../hl7/index.js';
import { Keyring } from './keyring.js';
import { all, close, exec, finalize, get, openDatabase, prepare, run, runStatement, allStatement, type SqlValue } from './sqlite.js';
import { acquireBufferLock, type BufferLock } from './lock.js';
import { RecentKeys } from './recent-keys.js';
import { FILE_COLUMNS, FILE_COLUMN_COUNT, INSERT_COLUMNS, INSERT_COLUMN_COUNT, SCHEMA_SQL, SCHEMA_VERSION, MESSAGE_COLUMNS } from './schema.js';

/** What a row keeps of its message's header, readable (the rest of the message is sealed). */
export type MessageMeta = HeaderMetadata;

export interface IncomingMessage {
  readonly sourceId: string;
  readonly payload: Buffer;
  /** Milliseconds since the epoch. */
  readonly receivedAt: number;
  readonly meta: MessageMeta;
}

export interface AppendOptions {
  /** Seconds within which identical bytes with the same control id from the same source are stored once; 0 disables. */
  readonly dedupeWindowSecs?: number;
}

export type AppendOutcome =
  | { readonly status: 'stored'; readonly seq: number }
  | { readonly status: 'duplicate'; readonly seq: number };

/** Why a whole append was refused without touching the database. */
export type AppendRefusal = { readonly status: 'full' } | { readonly status: 'closed' };

export type AppendResult = { readonly status: 'committed'; readonly outcomes: readonly AppendOutcome[] } | AppendRefusal;

/** A whole file whose messages are committed together with its hash (file_drop, import). */
export interface IncomingFile {
  readonly sourceId: string;
  /** The file's name (relative path) as taken; sealed at rest, never logged by the buffer. */
  readonly name: string;
  readonly size: number;
  /** sha256 of the file's bytes: with sourceId, its identity. */
  readonly sha256: Buffer;
}

export type FileAppendResult =
  /** Stored now: its messages hold seqs firstSeq .. firstSeq + messages - 1. */
  | { readonly status: 'committed'; readonly firstSeq: number; readonly messages: number }
  /** The same source already committed a file with these bytes (a crash before the move, a resend, a resumed import): nothing stored. */
  | { readonly status: 'already_taken'; readonly firstSeq: number }
  | AppendRefusal;

/**
 * One file's messages already hashed and sealed by a bulk writer (import, on worker threads), with
 * seqs it leased from this buffer (leaseSeqs): message i has seq firstSeq + i and its blob was
 * sealed with keyId and rowAad(bufferId, firstSeq + i, file.sourceId, keyId).
 */
export interface SealedFileAppend {
  readonly file: IncomingFile;
  readonly keyId: string;
  readonly firstSeq: number;
  readonly receivedAt: number;
  /** nonce ‖ ciphertext ‖ tag, one per message. */
  readonly sealed: readonly Buffer[];
  /** sha256 of each plaintext payload. */
  readonly sha256: readonly Buffer[];
  /** Plaintext payload sizes. */
  readonly sizes: readonly number[];
  readonly meta: readonly MessageMeta[];
}

/** What the buffer remembers of a file it took. */
export interface TakenFile {
  readonly sourceId: string;
  readonly sha256: Buffer;
  readonly size: number;
  readonly messages: number;
  readonly firstSeq: number;
  readonly takenAt: number;
}

export interface StoredMessage {
  readonly seq: number;
  readonly sourceId: string;
  readonly receivedAt: number;
  readonly payload: Buffer;
  readonly sha256: Buffer;
  readonly meta: MessageMeta;
}

export interface BufferStats {
  readonly bufferId: string;
  readonly depth: number;
  readonly bytes: number;
  readonly maxBytes: number;
  readonly oldestReceivedAt: number | null;
  readonly full: boolean;
  readonly lastSeq: number;
  readonly commits: number;
}

export interface BufferOptions {
  readonly path: string;
  readonly keyring: Keyring;
  readonly maxBytes: number;
  /** Called with each commit's duration in seconds and message count (metrics). */
  readonly onCommit?: (seconds: number, messages: number) => void;
  /** Largest number of messages one commit takes; the rest wait for the next. */
  readonly maxMessagesPerCommit?: number;
  /** The longest dedupe window any source uses (sizes the in-memory filter); default 1 h. */
  readonly maxDedupeWindowSecs?: number;
}

interface PendingAppend {
  /** The messages as given (empty for pre-sealed files: rows carry everything). */
  readonly messages: readonly IncomingMessage[];
  /** Sealed at arrival, one per message, in order (see append). */
  readonly rows: readonly SealedRow[];
  /** Dedupe filter keys, one per message (null or missing: dedupe off for this append). */
  readonly keys: readonly (Buffer | null)[];
  /** Pre-sealed file: answered with one outcome for the whole file, not one per message. */
  readonly sealedFile?: true;
  readonly bytes: number;
  readonly dedupeWindowMs: number;
  /** Set when the append is one file's messages: its row in `files` goes in the same transaction. */
  readonly file?: SealedFile;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (err: Error) => void;
}

// A commit of up to SINGLE_STATEMENT_ROWS rows is one INSERT statement of exactly that many rows,
// run in autocommit: atomic and durable on its own, one round trip to SQLite's thread. Larger
// commits use a transaction and power-of-two chunks, so a handful of cached statements cover them.
const SINGLE_STATEMENT_ROWS = 64;
const MAX_ROWS_PER_STATEMENT = 128;
const MAX_FILES_PER_STATEMENT = 64;
/** File commits: bigger statements (fewer round trips to SQLite's thread), see runBulkInsert. */
const MAX_BULK_ROWS_PER_STATEMENT = 256;
const BULK_ROW_PARAMS = 8;
const NO_FILES: ReadonlyMap<string, number> = new Map();
/** Pending messages from which the next commit is sealed while the current one is written. */
const PREPLAN_MIN_MESSAGES = 64;
/** Dedupe entries read per query when the filter is filled at start. */
const RECENT_KEYS_PAGE = 500;
/** The longest a commit waits for the senders of the previous one (see gatherFollowers). */
const GATHER_MAX_MS = 1;

export class MessageBuffer {
  private pending: PendingAppend[] = [];
  private pendingBytes = 0;
  private writing = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => {};
  private readonly writeOps: (() => Promise<void>)[] = [];
  private readonly insertStatements = new Map<number, sqlite3.Statement>();
  private dedupeLookup: sqlite3.Statement | undefined;
  private takenFileLookup: Promise<sqlite3.Statement> | undefined;
  private readonly fileInsertStatements = new Map<number, sqlite3.Statement>();
  private readonly bulkInsertStatements = new Map<number, sqlite3.Statement>();
  private depth = 0;
  private bytes = 0;
  private oldestReceivedAt: number | null = null;
  private nextSeq: number;
  private fullSince: number | null = null;
  private commits = 0;
  private readonly maxPerCommit: number;
  /** Set by leaseSeqs: a bulk writer hands out seqs from nextSeq on; other appends are refused. */
  private seqsLeased = false;
  private lock: BufferLock | undefined;

  private constructor(
    private readonly writer: sqlite3.Database,
    private readonly reader: sqlite3.Database,
    readonly bufferId: string,
    private keyring: Keyring,
    private options: BufferOptions,
    lastSeq: number,
  ) {
    this.nextSeq = lastSeq + 1;
    this.maxPerCommit = options.maxMessagesPerCommit ?? 4096;
    this.maxDedupeWindowMs = (options.maxDedupeWindowSecs ?? 3600) * 1000;
    this.recentKeys = new RecentKeys(this.maxDedupeWindowMs);
  }

  private readonly maxDedupeWindowMs: number;
  private readonly recentKeys: RecentKeys;
  private lastCommitMessages = 0;
  private lastInsertMs = 0;

  static async open(options: BufferOptions): Promise<MessageBuffer> {
    // One writing process per buffer (the agent, or an import): see lock.ts.
    const lock = acquireBufferLock(options.path);
    // Create the file owner-only before SQLite does; its -wal and -shm files inherit the mode.
    let writer: sqlite3.Database;
    try {
      closeSync(openSync(options.path, 'a', 0o600));
      writer = await openDatabase(options.path);
    } catch (err) {
      lock.release();
      throw err;
    }
    try {
      // auto_vacuum must be chosen before the first table exists; it lets deletes give disk back.
      await exec(writer, 'PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864; PRAGMA busy_timeout = 5000;');
      const mode = await get<{ journal_mode: string }>(writer, 'PRAGMA journal_mode');
      if (mode?.journal_mode !== 'wal') throw new FerryError('buffer_io', `buffer ${options.path} could not switch to WAL mode`);
      await exec(writer, SCHEMA_SQL);
      await run(writer, "INSERT OR IGNORE INTO meta(key, value) VALUES ('buffer_id', ?), ('schema_version', ?), ('created_at', ?)", [
        randomUUID(),
        String(SCHEMA_VERSION),
        new Date().toISOString(),
      ]);
      const idRow = await get<{ value: string }>(writer, "SELECT value FROM meta WHERE key = 'buffer_id'");
      // A seq is never handed out twice by one buffer: deletes record the highest seq they removed
      // (meta 'deleted_through'), so even with every row delivered and gone the count goes on.
      // (AUTOINCREMENT would do the same but rewrites sqlite_sequence on every commit.)
      const seqRow = await get<{ s: number | null }>(
        writer,
        "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'deleted_through'), 0), COALESCE((SELECT MAX(seq) FROM messages), 0)) AS s",
      );
      const totals = await get<{ n: number; b: number | null; oldest: number | null }>(
        writer,
        'SELECT COUNT(*) AS n, SUM(size) AS b, (SELECT received_at FROM messages ORDER BY seq LIMIT 1) AS oldest FROM messages',
      );
      const reader = await openDatabase(options.path, true);
      await exec(reader, 'PRAGMA busy_timeout = 5000;');
      const buffer = new MessageBuffer(writer, reader, idRow?.value ?? '', options.keyring, options, Number(seqRow?.s ?? 0));
      buffer.lock = lock;
      buffer.depth = totals?.n ?? 0;
      buffer.bytes = Number(totals?.b ?? 0);
      buffer.oldestReceivedAt = totals?.oldest ?? null;
      await buffer.loadRecentKeys(writer);
      return buffer;
    } catch (err) {
      await close(writer).catch(() => {});
      lock.release();
      throw err;
    }
  }

  /**
   * Fills the dedupe filter from the table, a page at a time in key order (keyset paging): memory
   * stays flat however many entries the window holds.
   */
  private async loadRecentKeys(db: sqlite3.Database): Promise<void> {
    const since = Date.now() - this.maxDedupeWindowMs;
    type Entry = { source_id: string; control_id: string; sha256: Buffer; seen_at: number };
    let page = await all<Entry>(db, 'SELECT source_id, control_id, sha256, seen_at FROM dedupe ORDER BY source_id, control_id, sha256 LIMIT ?', [RECENT_KEYS_PAGE]);
    while (page.length > 0) {
      for (const e of page) if (e.seen_at >= since) this.recentKeys.add(filterKey(e.source_id, e.sha256));
      if (page.length < RECENT_KEYS_PAGE) break;
      const last = page[page.length - 1]!;
      page = await all<Entry>(
        db,
        'SELECT source_id, control_id, sha256, seen_at FROM dedupe WHERE (source_id, control_id, sha256) > (?, ?, ?) ORDER BY source_id, control_id, sha256 LIMIT ?',
        [last.source_id, last.control_id, last.sha256, RECENT_KEYS_PAGE],
      );
    }
  }

  /** Swaps in a rotated keyring: new rows use its active key, old rows stay readable. */
  useKeyring(keyring: Keyring): void {
    this.keyring = keyring;
  }

  /** A new capacity (fleet policy, applied live): only later appends are checked against it. */
  setMaxBytes(maxBytes: number): void {
    this.options = { ...this.options, maxBytes };
    if (this.bytes < maxBytes * 0.95) this.fullSince = null;
  }

  stats(): BufferStats {
    return {
      bufferId: this.bufferId,
      depth: this.depth,
      bytes: this.bytes,
      maxBytes: this.options.maxBytes,
      oldestReceivedAt: this.oldestReceivedAt,
      full: this.fullSince !== null,
      lastSeq: this.nextSeq - 1,
      commits: this.commits,
    };
  }

  /**
   * Stores a group of messages atomically (one frame or one file): all committed, or none. Resolves
   * after the commit is durable; refuses at once, touching nothing, when the buffer is full or closed.
   */
  append(messages: readonly IncomingMessage[], options: AppendOptions = {}): Promise<AppendResult> {
    return this.enqueue(messages, options, undefined);
  }

  /**
   * Stores one file's messages and its identity (source, sha256, size, sealed name) in one
   * transaction, with consecutive seqs. When the same source already committed a file with the
   * same bytes (found in the table, or earlier in the commits in flight), nothing is stored and
   * the answer is `already_taken`. Full and closed refusals are as for append().
   */
  async appendFile(file: IncomingFile, messages: readonly IncomingMessage[]): Promise<FileAppendResult> {
    if (messages.length === 0) throw new FerryError('buffer_io', 'a file must hold at least one message');
    // firstSeq is a placeholder until enqueue assigns the seqs; the name's seal does not depend on it.
    return fileResult(await this.enqueue(messages, {}, this.fileRecord(file, messages.length, 0)), messages.length);
  }

  /** A file's row in `files`, its name sealed with the active key. */
  private fileRecord(file: IncomingFile, messages: number, firstSeq: number): SealedFile {
    const keyId = this.keyring.activeKeyId;
    return {
      sourceId: file.sourceId,
      sha256: file.sha256,
      size: file.size,
      messages,
      keyId,
      firstSeq,
      takenAt: Date.now(),
      sealedName: this.keyring.seal(Buffer.from(file.name, 'utf8'), fileNameAad(this.bufferId, file.sourceId, file.sha256, keyId)),
    };
  }

  /** Counts `size` bytes as pending, or (false) marks the buffer full when they do not fit. */
  private reserve(size: number): boolean {
    if (this.bytes + this.pendingBytes + size > this.options.maxBytes) {
      this.fullSince ??= Date.now();
      return false;
    }
    this.pendingBytes += size;
    return true;
  }

  /**
   * Hands seq assignment to a bulk writer (import) for the rest of this buffer's life: returns the
   * first free seq; the writer numbers its files' messages from there, strictly increasing, and
   * passes them to appendSealedFile in seq order (gaps allowed). append() and appendFile() are
   * refused from then on: they would take seqs the writer already gave out.
   */
  leaseSeqs(): number {
    this.seqsLeased = true;
    return this.nextSeq;
  }

  /**
   * appendFile() for a file whose messages a bulk writer already hashed and sealed (see
   * SealedFileAppend): same transaction, same file identity check, same answers. Must be called in
   * seq order; a seq at or below one already handed to the buffer is a bug and throws.
   */
  appendSealedFile(a: SealedFileAppend): Promise<FileAppendResult> {
    const n = a.sealed.length;
    if (n === 0 || a.sha256.length !== n || a.sizes.length !== n || a.meta.length !== n) throw new FerryError('buffer_io', 'a sealed file needs one blob, hash, size and header per message, at least one');
    if (!this.seqsLeased || !Number.isSafeInteger(a.firstSeq) || a.firstSeq < this.nextSeq) {
      throw new FerryError('buffer_io', `sealed rows must use seqs leased from this buffer, in order (got ${a.firstSeq}, next free ${this.nextSeq})`);
    }
    if (this.closed) return Promise.resolve({ status: 'closed' });
    let size = 0;
    for (const s of a.sizes) size += s;
    if (!this.reserve(size)) return Promise.resolve({ status: 'full' });
    this.nextSeq = a.firstSeq + n;
    const { file, keyId, receivedAt } = a;
    const rows: SealedRow[] = new Array<SealedRow>(n);
    for (let i = 0; i < n; i++) {
      rows[i] = { seq: a.firstSeq + i, sourceId: file.sourceId, receivedAt, keyId, sealed: a.sealed[i]!, meta: a.meta[i]!, size: a.sizes[i]!, sha256: a.sha256[i]!, dedupe: false };
    }
    const sealedFile = this.fileRecord(file, n, a.firstSeq);
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ messages: [], rows, keys: [], bytes: size, dedupeWindowMs: 0, file: sealedFile, sealedFile: true, resolve, reject });
      this.kick();
    }).then((result) => fileResult(result, n));
  }

  /** Sorted sha256s (32 bytes each, concatenated) of every file a source has taken: a bulk writer's skip list. */
  async takenFileHashes(sourceId: string): Promise<Buffer> {
    const rows = await all<{ sha256: Buffer }>(this.reader, 'SELECT sha256 FROM files WHERE source_id = ? ORDER BY sha256', [sourceId]);
    return Buffer.concat(rows.map((r) => r.sha256));
  }

  /** What the buffer remembers of a file this source committed with these bytes, if any (committed state only). */
  async takenFile(sourceId: string, sha256: Buffer): Promise<TakenFile | undefined> {
    this.takenFileLookup ??= prepare(this.reader, 'SELECT size, messages, first_seq, taken_at FROM files WHERE source_id = ? AND sha256 = ?');
    const [row] = await allStatement<{ size: number; messages: number; first_seq: number; taken_at: number }>(await this.takenFileLookup, [sourceId, sha256]);
    return row ? { sourceId, sha256, size: row.size, messages: row.messages, firstSeq: row.first_seq, takenAt: row.taken_at } : undefined;
  }

  /** How many files the buffer remembers for a source (import skips per-file lookups when none). */
  async countTakenFiles(sourceId: string): Promise<number> {
    return (await get<{ n: number }>(this.reader, 'SELECT COUNT(*) AS n FROM files WHERE source_id = ?', [sourceId]))?.n ?? 0;
  }

  /** The file name a taken file was committed under (decrypted), for tools that audit imports. */
  async takenFileName(sourceId: string, sha256: Buffer): Promise<string | undefined> {
    const row = await get<{ key_id: string; name: Buffer }>(this.reader, 'SELECT key_id, name FROM files WHERE source_id = ? AND sha256 = ?', [sourceId, sha256]);
    return row ? this.keyring.open(row.key_id, row.name, fileNameAad(this.bufferId, sourceId, sha256, row.key_id)).toString('utf8') : undefined;
  }

  /**
   * Forgets files a source took before `olderThanMs` ago. Only safe for files that can no longer
   * reappear in the source's folder (archived or deleted long ago); see README.md.
   */
  pruneFiles(sourceId: string, olderThanMs: number): Promise<number> {
    return this.enqueueWrite(async () => (await run(this.writer, 'DELETE FROM files WHERE source_id = ? AND taken_at < ?', [sourceId, Date.now() - olderThanMs])).changes);
  }

  private enqueue(messages: readonly IncomingMessage[], options: AppendOptions, file: SealedFile | undefined): Promise<AppendResult> {
    if (this.closed) return Promise.resolve({ status: 'closed' });
    if (this.seqsLeased) return Promise.reject(new FerryError('buffer_io', 'this buffer hands its seqs to a bulk writer (import): appends are refused'));
    let size = 0;
    for (const m of messages) size += m.payload.length;
    if (!this.reserve(size)) return Promise.resolve({ status: 'full' });
    // Hash, seq and seal now, while the commit in flight is being written: this work then stays
    // off the commit's critical path. Seqs follow arrival order, which is also commit order (the
    // queue is FIFO); a message later found to be a resend simply leaves its seq unused.
    const dedupeWindowMs = (options.dedupeWindowSecs ?? 0) * 1000;
    const rows: SealedRow[] = [];
    const keys: (Buffer | null)[] = [];
    for (const m of messages) {
      const sha256 = createHash('sha256').update(m.payload).digest();
      const seq = this.nextSeq++;
      const keyId = this.keyring.activeKeyId;
      rows.push({
        seq,
        sourceId: m.sourceId,
        receivedAt: m.receivedAt,
        keyId,
        sealed: this.keyring.seal(m.payload, rowAad(this.bufferId, seq, m.sourceId, keyId)),
        meta: m.meta,
        size: m.payload.length,
        sha256,
        dedupe: dedupeWindowMs > 0,
      });
      keys.push(dedupeWindowMs > 0 ? filterKey(m.sourceId, sha256) : null);
    }
    const fileRecord = file && { ...file, firstSeq: rows[0]!.seq };
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push(fileRecord ? { messages, rows, keys, bytes: size, dedupeWindowMs, file: fileRecord, resolve, reject } : { messages, rows, keys, bytes: size, dedupeWindowMs, resolve, reject });
      this.kick();
    });
  }

  /** The oldest rows after `afterSeq`, decrypted, in seq order, up to `limit` rows or about `maxBytes`. */
  async readOldest(afterSeq: number, limit: number, maxBytes = Number.MAX_SAFE_INTEGER): Promise<StoredMessage[]> {
    const rows = await all(this.reader, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`, [afterSeq, limit]);
    const out: StoredMessage[] = [];
    let total = 0;
    for (const row of rows) {
      const message = this.decryptRow(row);
      out.push(message);
      total += message.payload.length;
      if (total >= maxBytes) break;
    }
    return out;
  }

  /** Deletes every row up to and including seq (acknowledged upstream) and gives the space back. */
  deleteThrough(seq: number): Promise<number> {
    return this.enqueueWrite(async () => {
      const before = await get<{ n: number; b: number | null; top: number | null }>(
        this.writer,
        'SELECT COUNT(*) AS n, SUM(size) AS b, MAX(seq) AS top FROM messages WHERE seq <= ?',
        [seq],
      );
      if (!before || before.n === 0) return 0;
      // One script, one trip to SQLite's thread: the delete and the seq high-water mark in one
      // transaction. Then up to 2,000 free pages (8 MiB) go back to the file system.
      const through = safeInteger(seq);
      const top = safeInteger(Number(before.top));
      try {
        await exec(
          this.writer,
          `BEGIN IMMEDIATE; DELETE FROM messages WHERE seq <= ${through};` +
            ` INSERT INTO meta (key, value) VALUES ('deleted_through', '${top}') ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));` +
            ' COMMIT;',
        );
      } catch (err) {
        await run(this.writer, 'ROLLBACK').catch(() => {});
        throw err;
      }
      // Counters change together, after the commit, so stats() never shows a depth without its
      // matching oldest age.
      const oldest = await get<{ received_at: number }>(this.writer, 'SELECT received_at FROM messages ORDER BY seq LIMIT 1');
      this.depth -= before.n;
      this.bytes -= Number(before.b ?? 0);
      this.oldestReceivedAt = oldest?.received_at ?? null;
      if (this.bytes < this.options.maxBytes * 0.95) this.fullSince = null;
      // The rows are gone whatever happens here; a failed vacuum only delays reclaiming space.
      await exec(this.writer, 'PRAGMA incremental_vacuum(2000);').catch(() => {});
      return before.n;
    });
  }

  /** Forgets dedupe entries older than the longest window any source uses. */
  pruneDedupe(olderThanMs: number): Promise<number> {
    return this.enqueueWrite(async () => (await run(this.writer, 'DELETE FROM dedupe WHERE seen_at < ?', [Date.now() - olderThanMs])).changes);
  }

  /** Waits for every commit in flight, refuses new appends, and closes both connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writing || this.pending.length > 0 || this.writeOps.length > 0) await this.idle;
    for (const stmt of this.insertStatements.values()) await finalize(stmt);
    this.insertStatements.clear();
    if (this.dedupeLookup) await finalize(this.dedupeLookup);
    for (const stmt of this.fileInsertStatements.values()) await finalize(stmt);
    this.fileInsertStatements.clear();
    for (const stmt of this.bulkInsertStatements.values()) await finalize(stmt);
    this.bulkInsertStatements.clear();
    if (this.takenFileLookup) await this.takenFileLookup.then(finalize, () => {});
    await exec(this.writer, 'PRAGMA wal_checkpoint(TRUNCATE);').catch(() => {});
    try {
      await close(this.writer);
      await close(this.reader);
    } finally {
      this.lock?.release();
    }
  }

  private enqueueWrite<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new FerryError('buffer_closed', 'buffer is closed'));
    return new Promise<T>((resolve, reject) => {
      this.writeOps.push(() => op().then(resolve, reject));
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = true;
    this.idle = new Promise((r) => (this.markIdle = r));
    void this.writeLoop();
  }

  private async writeLoop(): Promise<void> {
    try {
      let next: PlannedCommit | undefined;
      for (;;) {
        if (!next) {
          const op = this.writeOps.shift();
          if (op) {
            await op();
            continue;
          }
          if (this.pending.length === 0) break;
          await this.gatherFollowers();
          next = await this.plan(this.takeGroup(), undefined);
          if (!next) continue;
        }
        const current = next;
        next = undefined;
        const insertStarted = performance.now();
        const written = this.insertRows(current.plan.rows, current.plan.files).then(
          () => {
            this.lastInsertMs = performance.now() - insertStarted;
            this.lastCommitMessages = current.plan.rows.length;
          },
          (err: unknown) => err,
        );
        // Under heavy load, plan the next group (its dedupe decisions) while SQLite writes this
        // one. Under light load, wait: the next group then takes everything that arrived during
        // this commit.
        if (this.pendingMessageCount() >= PREPLAN_MIN_MESSAGES) next = await this.plan(this.takeGroup(), current);
        const failure = await written;
        if (failure === undefined) {
          this.settle(current, insertStarted);
        } else {
          const err = new FerryError('buffer_io', 'buffer commit failed', { cause: failure });
          this.fail(current, err);
          // The next group may have been planned against this one (seqs, duplicates of its rows).
          if (next) this.fail(next, err);
          next = undefined;
        }
      }
    } finally {
      this.writing = false;
      this.markIdle();
    }
  }

  /** Pending messages, counted up to `enough` (the queue can be long; callers only compare). */
  private pendingMessageCount(enough = PREPLAN_MIN_MESSAGES): number {
    let n = 0;
    for (const p of this.pending) {
      n += p.rows.length;
      if (n >= enough) break;
    }
    return n;
  }

  /**
   * Group commit's weak spot is the commit that starts right after a big one: the senders just
   * acknowledged are about to send again, but the commit would start with the one or two messages
   * that arrived meanwhile, and the rest would wait a whole commit. So when far fewer messages are
   * waiting than the last commit held, give the event loop a few turns (bounded by half the last
   * commit's write time, and by GATHER_MAX_MS) to read them. A lone sender never waits: the last
   * commit held one message.
   */
  private async gatherFollowers(): Promise<void> {
    const target = Math.floor(this.lastCommitMessages * 0.75);
    if (target < 2 || this.closed || this.pendingMessageCount(target) >= target) return;
    const deadline = performance.now() + Math.min(GATHER_MAX_MS, this.lastInsertMs / 2);
    while (!this.closed && performance.now() < deadline && this.pendingMessageCount(target) < target) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Takes pending appends, whole, up to the per-commit message limit (always at least one). */
  private takeGroup(): PendingAppend[] {
    const group: PendingAppend[] = [];
    let count = 0;
    while (this.pending.length > 0) {
      const next = this.pending[0]!;
      if (group.length > 0 && count + next.rows.length > this.maxPerCommit) break;
      group.push(next);
      count += next.rows.length;
      this.pending.shift();
    }
    return group;
  }

  /** Plans a group, or fails it (and returns undefined) when planning itself fails. */
  private async plan(group: readonly PendingAppend[], inFlight: PlannedCommit | undefined): Promise<PlannedCommit | undefined> {
    let bytes = 0;
    for (const p of group) bytes += p.bytes;
    try {
      const plan = await this.planGroup(group, Date.now(), inFlight?.plan);
      return { group, plan, bytes };
    } catch (cause) {
      this.fail({ group, bytes }, new FerryError('buffer_io', 'buffer commit failed', { cause }));
      return undefined;
    }
  }

  /** Resolves a durable commit's appends; insertStarted times the write alone for the metric. */
  private settle(c: PlannedCommit, insertStarted: number): void {
    this.pendingBytes -= c.bytes;
    this.commits++;
    let storedBytes = 0;
    for (const row of c.plan.rows) storedBytes += row.size;
    if (this.depth === 0 && c.plan.rows.length > 0) this.oldestReceivedAt = c.plan.rows[0]!.receivedAt;
    this.depth += c.plan.rows.length;
    this.bytes += storedBytes;
    this.options.onCommit?.((performance.now() - insertStarted) / 1000, c.plan.rows.length);
    for (let i = 0; i < c.group.length; i++) c.group[i]!.resolve({ status: 'committed', outcomes: c.plan.outcomes[i]! });
  }

  private fail(c: { readonly group: readonly PendingAppend[]; readonly bytes: number }, err: Error): void {
    this.pendingBytes -= c.bytes;
    for (const p of c.group) p.reject(err);
  }

  /** Decides, before writing, which of the group's (already sealed) messages are new. */
  private async planGroup(group: readonly PendingAppend[], now: number, inFlight: CommitPlan | undefined): Promise<CommitPlan> {
    const inFlightKeys = inFlight?.keys;
    const known = await this.lookupDedupe(group, now);
    const rows: SealedRow[] = [];
    const outcomes: AppendOutcome[][] = [];
    const seenInGroup = new Map<string, number>();
    // Files: only groups that hold one pay for the lookups (the MLLP path never does).
    const files: SealedFile[] = [];
    const filesInGroup = new Map<string, number>();
    const knownFiles = group.some((p) => p.file !== undefined) ? await this.lookupFiles(group) : NO_FILES;
    for (const p of group) {
      if (p.file) {
        const fileKey = fileIdentity(p.file.sourceId, p.file.sha256);
        const earlier = filesInGroup.get(fileKey) ?? inFlight?.fileKeys.get(fileKey) ?? knownFiles.get(fileKey);
        if (earlier !== undefined) {
          // Taken before: every message answers as a duplicate of the earlier file's rows; nothing is written.
          outcomes.push(p.rows.map((_, i) => ({ status: 'duplicate', seq: earlier + i })));
          continue;
        }
        filesInGroup.set(fileKey, p.file.firstSeq);
        files.push(p.file);
      }
      if (p.sealedFile) {
        // Pre-sealed (import): never deduplicated per message; one outcome answers the file.
        for (const row of p.rows) rows.push(row);
        outcomes.push([{ status: 'stored', seq: p.file!.firstSeq }]);
        continue;
      }
      const groupOutcomes: AppendOutcome[] = [];
      for (let i = 0; i < p.rows.length; i++) {
        const row = p.rows[i]!;
        const key = p.keys[i] ?? null;
        const hexKey = key?.toString('hex');
        const earlier = hexKey === undefined ? undefined : (seenInGroup.get(hexKey) ?? inFlightKeys?.get(hexKey) ?? known.get(hexKey));
        if (earlier !== undefined) {
          groupOutcomes.push({ status: 'duplicate', seq: earlier });
          continue;
        }
        rows.push(row);
        if (key && hexKey !== undefined) {
          seenInGroup.set(hexKey, row.seq);
          // Added before the commit: if it fails, the filter only has a harmless false positive.
          this.recentKeys.add(key);
        }
        groupOutcomes.push({ status: 'stored', seq: row.seq });
      }
      outcomes.push(groupOutcomes);
    }
    return { rows, outcomes, keys: seenInGroup, files, fileKeys: filesInGroup };
  }

  /** first_seq of the group's files already in the `files` table, by identity: one query per source and commit. */
  private async lookupFiles(group: readonly PendingAppend[]): Promise<ReadonlyMap<string, number>> {
    const found = new Map<string, number>();
    const bySource = new Map<string, Buffer[]>();
    for (const p of group) {
      if (!p.file) continue;
      const list = bySource.get(p.file.sourceId);
      if (list) list.push(p.file.sha256);
      else bySource.set(p.file.sourceId, [p.file.sha256]);
    }
    for (const [sourceId, hashes] of bySource) {
      for (let at = 0; at < hashes.length; at += 500) {
        const chunk = hashes.slice(at, at + 500);
        const rows = await all<{ sha256: Buffer; first_seq: number }>(
          this.writer,
          `SELECT sha256, first_seq FROM files WHERE source_id = ? AND sha256 IN (${placeholders(1, chunk.length)})`,
          [sourceId, ...chunk],
        );
        for (const r of rows) found.set(fileIdentity(sourceId, r.sha256), r.first_seq);
      }
    }
    return found;
  }

  /**
   * Earlier seqs of keys stored within their window. Only keys the in-memory filter cannot rule
   * out are looked up in SQL, so a commit of fresh messages costs no extra round trip.
   */
  private async lookupDedupe(group: readonly PendingAppend[], now: number): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (const p of group) {
      for (let i = 0; i < p.keys.length; i++) {
        const key = p.keys[i];
        if (!key || (p.dedupeWindowMs <= this.maxDedupeWindowMs && !this.recentKeys.mightContain(key))) continue;
        const m = p.messages[i]!;
        this.dedupeLookup ??= await prepare(this.writer, 'SELECT seq, seen_at FROM dedupe WHERE source_id = ? AND control_id = ? AND sha256 = ?');
        const [row] = await allStatement<{ seq: number; seen_at: number }>(this.dedupeLookup, [m.sourceId, m.meta.controlId, p.rows[i]!.sha256]);
        if (row && row.seen_at >= now - p.dedupeWindowMs) found.set(key.toString('hex'), row.seq);
      }
    }
    return found;
  }

  /** Writes the rows (and, by trigger, their dedupe entries) atomically and durably. */
  private async insertRows(rows: readonly SealedRow[], files: readonly SealedFile[]): Promise<void> {
    if (rows.length === 0) return;
    if (rows.length <= SINGLE_STATEMENT_ROWS && files.length === 0) {
      // One statement in autocommit is its own transaction: SQLite fsyncs the WAL before it returns.
      await this.runInsert(rows, 0, rows.length);
      return;
    }
    await run(this.writer, 'BEGIN IMMEDIATE');
    try {
      let offset = 0;
      const bulk = files.length > 0 && sharesSourceAndKey(rows);
      while (offset < rows.length) {
        const runLength = bulk ? bulkRunLength(rows, offset) : 0;
        if (runLength > 0) {
          const size = previousPowerOfTwo(runLength);
          await this.runBulkInsert(rows, offset, size);
          offset += size;
          continue;
        }
        // Outside a bulk run (a row that breaks it goes alone): the general statement.
        const size = bulk ? 1 : Math.min(MAX_ROWS_PER_STATEMENT, previousPowerOfTwo(rows.length - offset));
        await this.runInsert(rows, offset, size);
        offset += size;
      }
      for (let at = 0; at < files.length; ) {
        const size = Math.min(MAX_FILES_PER_STATEMENT, previousPowerOfTwo(files.length - at));
        await this.runFileInsert(files, at, size);
        at += size;
      }
      await run(this.writer, 'COMMIT');
    } catch (err) {
      await run(this.writer, 'ROLLBACK').catch(() => {});
      throw err;
    }
  }

  private async runInsert(rows: readonly SealedRow[], offset: number, count: number): Promise<void> {
    const stmt = await this.cachedStatement(this.insertStatements, count, () => `INSERT INTO messages (${INSERT_COLUMNS}) VALUES ${placeholders(INSERT_COLUMN_COUNT, count)}`);
    const params: SqlValue[] = new Array<SqlValue>(count * INSERT_COLUMN_COUNT);
    let j = 0;
    for (let i = offset; i < offset + count; i++) {
      const row = rows[i]!;
      params[j++] = row.seq;
      params[j++] = row.sourceId;
      params[j++] = row.receivedAt;
      params[j++] = row.keyId;
      params[j++] = row.sealed;
      j = putMeta(params, j, row.meta);
      params[j++] = row.size;
      params[j++] = row.sha256;
      params[j++] = row.dedupe ? 1 : 0;
    }
    await runStatement(stmt, params);
  }

  /**
   * File commits (file_drop, import) whose rows share one source and key, are never deduplicated,
   * and come in runs of consecutive seqs with one received_at (bulkRunLength): what is the same for
   * every row is bound once per statement (?1 source, ?2 key, ?3 first seq, ?4 received_at), seq is
   * ?3 plus the row's offset, size is the sealed blob's length less nonce and tag, and the dedupe
   * flag a literal: 8 parameters per row instead of 14. Binding them on the main thread was the
   * import's largest cost after sealing (measured: about 35% less CPU for the same rows).
   */
  private async runBulkInsert(rows: readonly SealedRow[], offset: number, count: number): Promise<void> {
    const stmt = await this.cachedStatement(this.bulkInsertStatements, count, () => {
      const values: string[] = [];
      const overhead = Keyring.sealedLength(0);
      for (let r = 0; r < count; r++) {
        const b = 5 + r * BULK_ROW_PARAMS;
        // seq, source_id, received_at, key_id, payload, type, trigger, control id, app, facility, version, size, sha256, dedupe
        values.push(`(?3+${r},?1,?4,?2,?${b},?${b + 1},?${b + 2},?${b + 3},?${b + 4},?${b + 5},?${b + 6},length(?${b})-${overhead},?${b + 7},0)`);
      }
      return `INSERT INTO messages (${INSERT_COLUMNS}) VALUES ${values.join(',')}`;
    });
    const first = rows[offset]!;
    const params: SqlValue[] = new Array<SqlValue>(4 + count * BULK_ROW_PARAMS);
    params[0] = first.sourceId;
    params[1] = first.keyId;
    params[2] = first.seq;
    params[3] = first.receivedAt;
    let j = 4;
    for (let i = offset; i < offset + count; i++) {
      const row = rows[i]!;
      params[j++] = row.sealed;
      j = putMeta(params, j, row.meta);
      params[j++] = row.sha256;
    }
    await runStatement(stmt, params);
  }

  private async runFileInsert(files: readonly SealedFile[], offset: number, count: number): Promise<void> {
    const stmt = await this.cachedStatement(this.fileInsertStatements, count, () => `INSERT INTO files (${FILE_COLUMNS}) VALUES ${placeholders(FILE_COLUMN_COUNT, count)}`);
    const params: SqlValue[] = [];
    for (let i = offset; i < offset + count; i++) {
      const f = files[i]!;
      params.push(f.sourceId, f.sha256, f.size, f.messages, f.firstSeq, f.takenAt, f.keyId, f.sealedName);
    }
    await runStatement(stmt, params);
  }

  private async cachedStatement(cache: Map<number, sqlite3.Statement>, size: number, sql: () => string): Promise<sqlite3.Statement> {
    let stmt = cache.get(size);
    if (!stmt) {
      stmt = await prepare(this.writer, sql());
      cache.set(size, stmt);
    }
    return stmt;
  }

  private decryptRow(row: Record<string, SqlValue>): StoredMessage {
    const seq = Number(row.seq);
    const sourceId = String(row.source_id);
    const keyId = String(row.key_id);
    const payload = this.keyring.open(keyId, row.payload as Buffer, rowAad(this.bufferId, seq, sourceId, keyId));
    return {
      seq,
      sourceId,
      receivedAt: Number(row.received_at),
      payload,
      sha256: row.sha256 as Buffer,
      meta: {
        messageType: String(row.message_type ?? ''),
        triggerEvent: String(row.trigger_event ?? ''),
        controlId: String(row.control_id ?? ''),
        sendingApplication: String(row.sending_app ?? ''),
        sendingFacility: String(row.sending_facility ?? ''),
        version: String(row.version ?? ''),
      },
    };
  }
}

interface SealedRow {
  readonly seq: number;
  readonly sourceId: string;
  readonly receivedAt: number;
  readonly keyId: string;
  readonly sealed: Buffer;
  readonly meta: MessageMeta;
  readonly size: number;
  readonly sha256: Buffer;
  readonly dedupe: boolean;
}

interface SealedFile {
  readonly sourceId: string;
  readonly sha256: Buffer;
  readonly size: number;
  readonly messages: number;
  readonly firstSeq: number;
  readonly takenAt: number;
  readonly keyId: string;
  readonly sealedName: Buffer;
}

interface PlannedCommit {
  readonly group: readonly PendingAppend[];
  readonly plan: CommitPlan;
  readonly bytes: number;
}

interface CommitPlan {
  readonly rows: readonly SealedRow[];
  /** Filter keys (hex) of this plan's deduplicated rows, with their seqs. */
  readonly keys: ReadonlyMap<string, number>;
  readonly outcomes: readonly (readonly AppendOutcome[])[];
  /** Files stored by this plan (their rows in `files`), and their identities with first seqs. */
  readonly files: readonly SealedFile[];
  readonly fileKeys: ReadonlyMap<string, number>;
}

/** Authenticated data: a sealed payload only opens in the row, buffer and source it was written for. */
export function rowAad(bufferId: string, seq: number, sourceId: string, keyId: string): Buffer {
  return Buffer.from(`ferry-row-v1\0${bufferId}\0${seq}\0${sourceId}\0${keyId}`, 'utf8');
}

/** Authenticated data of a sealed file name: it only opens for the source and content it was written for. */
export function fileNameAad(bufferId: string, sourceId: string, sha256: Buffer, keyId: string): Buffer {
  return Buffer.from(`ferry-file-v1\0${bufferId}\0${sourceId}\0${sha256.toString('hex')}\0${keyId}`, 'utf8');
}

function fileIdentity(sourceId: string, sha256: Buffer): string {
  return `${sourceId}\0${sha256.toString('hex')}`;
}

/** An integer for SQL text; anything else is a bug, never interpolated. */
function safeInteger(n: number): number {
  if (!Number.isSafeInteger(n)) throw new FerryError('buffer_io', 'expected an integer seq');
  return n;
}

/**
 * Same source, same bytes (so the same MSH-10): the identity a resend has, as a filter key. The
 * payload's sha256 XOR a per-source constant: no second hash per message on the hot path.
 */
function filterKey(sourceId: string, payloadSha256: Buffer): Buffer {
  let salt = sourceSalts.get(sourceId);
  if (!salt) {
    salt = createHash('sha256').update(`ferry-dedupe\0${sourceId}`).digest();
    sourceSalts.set(sourceId, salt);
  }
  const key = Buffer.allocUnsafe(16);
  for (let i = 0; i < 16; i++) key[i] = payloadSha256[i]! ^ salt[i]!;
  return key;
}

const sourceSalts = new Map<string, Buffer>();

/** A file append's answer: its first outcome says whether the file was stored or taken before. */
function fileResult(result: AppendResult, messages: number): FileAppendResult {
  if (result.status !== 'committed') return result;
  const first = result.outcomes[0]!;
  return first.status === 'duplicate' ? { status: 'already_taken', firstSeq: first.seq } : { status: 'committed', firstSeq: first.seq, messages };
}

/** True when every row has the first row's source and key and none is deduplicated (runBulkInsert's shape). */
function sharesSourceAndKey(rows: readonly SealedRow[]): boolean {
  const first = rows[0];
  if (!first) return false;
  for (const r of rows) if (r.sourceId !== first.sourceId || r.keyId !== first.keyId || r.dedupe) return false;
  return true;
}

/** Rows from `offset` on with consecutive seqs, one received_at and sealed = size + nonce + tag (runBulkInsert binds those once). */
function bulkRunLength(rows: readonly SealedRow[], offset: number): number {
  const first = rows[offset]!;
  const overhead = Keyring.sealedLength(0);
  let n = 0;
  while (offset + n < rows.length && n < MAX_BULK_ROWS_PER_STATEMENT) {
    const r = rows[offset + n]!;
    if (r.seq !== first.seq + n || r.receivedAt !== first.receivedAt || r.sealed.length !== r.size + overhead) break;
    n++;
  }
  return n;
}

/** Binds a row's header fields at `at`, in the column order of INSERT_COLUMNS; returns the next index. */
function putMeta(params: SqlValue[], at: number, meta: MessageMeta): number {
  params[at] = meta.messageType;
  params[at + 1] = meta.triggerEvent;
  params[at + 2] = meta.controlId;
  params[at + 3] = meta.sendingApplication;
  params[at + 4] = meta.sendingFacility;
  params[at + 5] = meta.version;
  return at + 6;
}

function placeholders(columns: number, rows: number): string {
  const one = columns === 1 ? '?' : `(${new Array(columns).fill('?').join(',')})`;
  return new Array(rows).fill(one).join(',');
}

function previousPowerOfTwo(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}
