// The file_drop source: watches a folder (chokidar), takes each complete file whole, commits its
// messages with its sha256 in one transaction, then archives (or deletes) it. Unusable files go to
// error_dir with a reason file. Lifecycle: start(), stop(deadline), health(), counters().
// When a file is complete (stable, or renamed in) is decided by completion.ts; this module takes
// complete files: read, parse, commit, move.
//
// Crash safety comes from the order of steps and the buffer's `files` table: commit (messages +
// hash) first, move second. A crash before the commit leaves the file in place (taken again on
// start); a crash between commit and move leaves a file whose hash is already committed, which the
// next start only archives. Startup reconciliation is just the initial scan through the same path.

import { mkdir, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { AgentMetrics } from '../../admin/metrics.js';
import type { FileAppendResult, IncomingFile, IncomingMessage, TakenFile } from '../../buffer/index.js';
import type { FileDropSourceConfig } from '../../config/index.js';
import { FerryError } from '../../errors.js';
import type { Source, SourceCounters, SourceHealth } from '../source.js';
import { CompletionTracker, type Candidate } from './completion.js';
import { compileFileFilter } from './file-filter.js';
import { FlatWatcher } from './flat-watcher.js';
import { deleteDurably, moveWithoutOverwrite, sweepPartials, writeFileDurably } from './move-file.js';
import { parseFileMessages, readFileSafely, sha256Of, type FileProblem } from './parse-file.js';

/** What the source needs of the buffer. */
export interface FileSink {
  appendFile(file: IncomingFile, messages: readonly IncomingMessage[]): Promise<FileAppendResult>;
  takenFile(sourceId: string, sha256: Buffer): Promise<TakenFile | undefined>;
  pruneFiles(sourceId: string, olderThanMs: number): Promise<number>;
}

export interface FileDropSourceDeps {
  readonly buffer: FileSink;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
}

export interface FileDropCounters {
  filesSeen: number;
  filesTaken: number;
  filesDuplicate: number;
  filesArchived: number;
  filesDeleted: number;
  filesErrored: number;
  filesRefused: number;
  messages: number;
  pending: number;
  paused: boolean;
  lastError: string | null;
}

/** Files read and committing at once (bounds memory with MAX_BYTES_IN_FLIGHT; one file always may go). */
const MAX_FILES_IN_FLIGHT = 32;
const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
const FULL_BACKOFF_MIN_MS = 500;
const FULL_BACKOFF_MAX_MS = 30_000;
const MOVE_RETRY_MS = 5_000;
const PRUNE_INTERVAL_MS = 24 * 3600 * 1000;
/** Re-listing of a chokidar-watched folder (missed events); a whole tree less often. */
const FLAT_RESCAN_MS = 5_000;
const TREE_RESCAN_MS = 30_000;

export class FileDropSource implements Source {
  private readonly log: Logger;
  private readonly tracker: CompletionTracker;
  private readonly queue: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private bytesInFlight = 0;
  private watcher: FSWatcher | FlatWatcher | undefined;
  private root = '';
  private archiveDir: string | undefined;
  private errorDir = '';
  private stopping = false;
  private paused = false;
  private backoffMs = FULL_BACKOFF_MIN_MS;
  private resumeTimer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private healthValue: SourceHealth = { state: 'stopped', message: 'not started', since: new Date().toISOString() };
  readonly stats: FileDropCounters = {
    filesSeen: 0,
    filesTaken: 0,
    filesDuplicate: 0,
    filesArchived: 0,
    filesDeleted: 0,
    filesErrored: 0,
    filesRefused: 0,
    messages: 0,
    pending: 0,
    paused: false,
    lastError: null,
  };
  private readonly outcome: (o: 'seen' | 'taken' | 'duplicate' | 'archived' | 'deleted' | 'errored' | 'refused') => void;

  constructor(
    readonly config: FileDropSourceConfig,
    private readonly deps: FileDropSourceDeps,
  ) {
    this.log = deps.log.child({ component: 'source', type: 'file_drop', id: config.id });
    this.tracker = new CompletionTracker(
      { stableSecs: config.stable_secs, ignoreTemporary: config.ignore_temporary, accept: compileFileFilter({ include: config.include, exclude: config.exclude, ignoreTemporary: config.ignore_temporary }), log: this.log },
      {
        seen: () => {
          this.stats.filesSeen++;
          this.outcome('seen');
        },
        complete: (c) => {
          this.queue.push(c.abs);
          this.pump();
        },
        pendingChanged: () => this.updatePending(),
        stopping: () => this.stopping,
      },
    );
    const counters = new Map<string, { inc(): void }>();
    this.outcome = (o) => {
      let c = counters.get(o);
      if (!c) {
        c = deps.metrics.fileDropFiles.labels(config.id, o);
        counters.set(o, c);
      }
      c.inc();
    };
  }

  counters(): SourceCounters {
    return { ...this.stats, pending: this.tracker.size, paused: this.paused ? 1 : 0 };
  }

  describe(): Readonly<Record<string, unknown>> {
    return { path: this.config.path };
  }

  health(): SourceHealth {
    return this.healthValue;
  }

  async start(): Promise<void> {
    this.setHealth('starting', 'opening folders');
    try {
      this.root = await realpath(resolve(this.config.path));
      this.tracker.root = this.root;
      if (!(await stat(this.root)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      this.errorDir = await ensureDir(this.config.error_dir);
      if (this.config.archive_dir !== undefined) this.archiveDir = await ensureDir(this.config.archive_dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      this.setHealth('failed', `cannot use its folders: ${code}`);
      throw new FerryError('source_failed', `source ${this.config.id}: the watched folder, archive_dir or error_dir cannot be used (${code}); create them and give the agent access`, { cause: err });
    }
    if (this.root === this.errorDir || this.root === this.archiveDir) {
      this.setHealth('failed', 'archive_dir or error_dir is the watched folder');
      throw new FerryError('source_failed', `source ${this.config.id}: archive_dir and error_dir must not be the watched folder`);
    }
    for (const dir of [this.errorDir, this.archiveDir]) if (dir !== undefined) await sweepPartials(dir);
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
    this.watcher = this.config.recursive || this.config.polling ? await this.watchTree() : await FlatWatcher.start(this.root, { seen: (p) => this.tracker.observe(p), error: (err) => this.watcherError(err) });
    this.setHealth('running', `watching ${this.config.path}`);
    this.log.info({ path: this.config.path, recursive: this.config.recursive, polling: this.config.polling, stable_secs: this.config.stable_secs, files_found: this.tracker.size }, 'file_drop watching');
  }

  /** chokidar, for sub-folders and polling; resolves once the initial scan is done. */
  private async watchTree(): Promise<FSWatcher> {
    const pollMs = this.config.poll_interval_secs * 1000;
    const watcher = watch(this.root, {
      persistent: true,
      ignoreInitial: false,
      followSymlinks: false,
      ...(this.config.recursive ? {} : { depth: 0 }),
      usePolling: this.config.polling,
      interval: pollMs,
      binaryInterval: pollMs,
      ignorePermissionErrors: true,
      atomic: false,
      // archive_dir and error_dir inside a recursively watched folder are left out.
      ignored: (p: string) => this.isOwnFolder(p),
    });
    watcher.on('add', (p: string) => this.tracker.observe(p));
    watcher.on('change', (p: string) => this.tracker.observe(p));
    watcher.on('unlink', (p: string) => this.tracker.forget(p));
    watcher.on('error', (err: unknown) => this.watcherError(err));
    await new Promise<void>((res) => watcher.once('ready', () => res()));
    // Safety net: chokidar's polling can miss a file created right as it takes its first stat of
    // the folder (seen in tests), and any watcher can miss events; a periodic listing catches up.
    this.rescanTimer = setInterval(() => void this.rescanTree(), this.config.recursive ? TREE_RESCAN_MS : FLAT_RESCAN_MS);
    this.rescanTimer.unref();
    return watcher;
  }

  private async rescanTree(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.root, { recursive: this.config.recursive });
    } catch (err) {
      this.watcherError(err);
      return;
    }
    for (const name of names) {
      const abs = join(this.root, name);
      if (!this.stopping && !this.isOwnFolder(abs)) this.tracker.observe(abs);
    }
  }

  private watcherError(err: unknown): void {
    this.noteError(`watcher error: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { err: { code: (err as NodeJS.ErrnoException).code } });
  }

  /**
   * Stops watching, lets the files being taken finish their commit and move until the deadline,
   * then returns; a file still in progress is left in place (or, committed, archived on the next start).
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.setHealth('stopping', 'finishing files in progress');
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    this.tracker.clearTimers();
    await this.watcher?.close();
    this.watcher = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.inFlight]), new Promise<void>((res) => (timer = setTimeout(res, Math.max(0, deadlineMs - Date.now()))))]);
    if (timer) clearTimeout(timer);
    this.deps.metrics.fileDropPending.labels(this.config.id).set(0);
    this.deps.metrics.fileDropPaused.labels(this.config.id).set(0);
    this.setHealth('stopped', 'stopped');
    this.log.info({ in_progress: this.inFlight.size }, 'file_drop stopped');
  }

  private isOwnFolder(p: string): boolean {
    return isWithin(p, this.errorDir) || (this.archiveDir !== undefined && isWithin(p, this.archiveDir));
  }

  private pump(): void {
    while (!this.paused && !this.stopping && this.queue.length > 0 && this.inFlight.size < MAX_FILES_IN_FLIGHT && (this.inFlight.size === 0 || this.bytesInFlight < MAX_BYTES_IN_FLIGHT)) {
      const abs = this.queue.shift()!;
      const c = this.tracker.get(abs);
      if (!c || c.state !== 'queued') continue;
      c.state = 'taking';
      const size = Math.max(0, Math.min(c.size, this.config.max_file_bytes));
      this.bytesInFlight += size;
      const p: Promise<void> = this.take(c)
        .catch((err: unknown) => {
          this.noteError(`taking a file failed: ${errorCode(err)}`, { err: { code: errorCode(err) } });
          this.retryLater(c);
        })
        .finally(() => {
          this.inFlight.delete(p);
          this.bytesInFlight -= size;
          this.pump();
        });
      this.inFlight.add(p);
    }
  }

  private async take(c: Candidate): Promise<void> {
    if (!isWithin(await realpath(dirname(c.abs)).catch(() => ''), this.root)) {
      this.stats.filesRefused++;
      this.outcome('refused');
      this.noteError('a file whose folder resolves outside the watched folder was refused (left in place)', {});
      this.tracker.drop(c);
      return;
    }
    const read = await readFileSafely(c.abs, this.config.max_file_bytes);
    if (read.kind === 'gone') return this.tracker.drop(c);
    if (read.kind === 'changed') return this.tracker.wait(c, this.config.stable_secs * 1000);
    if (read.kind === 'problem') return this.reject(c, read.problem, read.stat?.size ?? null, null);
    const { bytes } = read;
    const sha256 = sha256Of(bytes);
    const fileLog = { size: bytes.length, sha256_prefix: sha256.toString('hex').slice(0, 12) };
    const known = await this.deps.buffer.takenFile(this.config.id, sha256);
    if (known) {
      this.duplicate(c, fileLog);
      return this.finish(c, fileLog);
    }
    const parsed = parseFileMessages(bytes, this.config.id, Date.now());
    if (!parsed.ok) return this.reject(c, parsed.problem, bytes.length, sha256);
    const result = await this.deps.buffer.appendFile({ sourceId: this.config.id, name: c.rel, size: bytes.length, sha256 }, parsed.messages);
    switch (result.status) {
      case 'full':
        c.state = 'queued';
        this.queue.unshift(c.abs);
        this.pause();
        return;
      case 'closed':
        // Shutting down: the file stays and is taken on the next start.
        c.state = 'waiting';
        return;
      case 'already_taken':
        this.duplicate(c, fileLog);
        break;
      case 'committed': {
        this.resumed();
        this.stats.filesTaken++;
        this.stats.messages += result.messages;
        this.outcome('taken');
        this.deps.metrics.messagesReceived.labels(this.config.id).inc(result.messages);
        this.deps.metrics.bytesReceived.labels(this.config.id).inc(bytes.length);
        if (this.log.isLevelEnabled('debug')) this.log.debug({ ...fileLog, file: c.rel, messages: result.messages, first_seq: result.firstSeq }, 'file committed');
        break;
      }
    }
    await this.finish(c, fileLog);
  }

  private duplicate(c: Candidate, fileLog: object): void {
    this.stats.filesDuplicate++;
    this.outcome('duplicate');
    this.log.info(fileLog, 'file with the same bytes was already taken by this source (a resend, or a crash before it was archived): archived without storing it again');
  }

  /** After the commit: archive (or delete). A failure is retried; the commit already happened, so nothing is stored twice. */
  private async finish(c: Candidate, fileLog: object): Promise<void> {
    c.state = 'finishing';
    try {
      if (this.archiveDir !== undefined) {
        await moveWithoutOverwrite(c.abs, this.archiveDir, c.rel);
        this.stats.filesArchived++;
        this.outcome('archived');
      } else {
        await deleteDurably(c.abs);
        this.stats.filesDeleted++;
        this.outcome('deleted');
      }
      this.tracker.drop(c);
    } catch (err) {
      this.noteError(`file committed but could not be ${this.archiveDir !== undefined ? 'archived' : 'deleted'}: ${errorCode(err)}; retrying`, { ...fileLog, err: { code: errorCode(err) } });
      this.retryLater(c);
    }
  }

  /** Moves a file that cannot be taken to error_dir with its reason; nothing of it is stored. */
  private async reject(c: Candidate, problem: FileProblem, size: number | null, sha256: Buffer | null): Promise<void> {
    const refusal = problem.code === 'symlink' || problem.code === 'not_regular_file';
    c.state = 'finishing';
    try {
      const reason = {
        source_id: this.config.id,
        file: c.rel,
        size,
        sha256: sha256?.toString('hex') ?? null,
        error: {
          code: problem.code,
          message: problem.message,
          ...(problem.offset !== undefined ? { offset: problem.offset } : {}),
          ...(problem.messageIndex !== undefined ? { message_index: problem.messageIndex } : {}),
          ...(problem.segment !== undefined ? { segment: problem.segment } : {}),
          ...(problem.field !== undefined ? { field: problem.field } : {}),
        },
        at: new Date().toISOString(),
      };
      await moveWithoutOverwrite(c.abs, this.errorDir, c.rel, (moved) => writeFileDurably(`${moved}.reason.json`, JSON.stringify(reason, null, 2) + '\n'));
      if (refusal) this.stats.filesRefused++;
      else this.stats.filesErrored++;
      this.outcome(refusal ? 'refused' : 'errored');
      this.noteError(`file ${refusal ? 'refused' : 'not taken'}: ${problem.code}: ${problem.message}`, {
        code: problem.code,
        size,
        sha256_prefix: sha256?.toString('hex').slice(0, 12),
      }, 'moved to error_dir with a .reason.json beside it; the other files are unaffected');
      this.tracker.drop(c);
    } catch (err) {
      this.noteError(`file could not be moved to error_dir: ${errorCode(err)}; retrying`, { code: problem.code, err: { code: errorCode(err) } });
      this.retryLater(c);
    }
  }

  private retryLater(c: Candidate): void {
    if (this.stopping) return;
    c.state = 'waiting';
    if (c.timer) clearTimeout(c.timer);
    c.timer = setTimeout(() => {
      c.size = -1; // look again from scratch
      void this.tracker.check(c);
    }, MOVE_RETRY_MS);
  }

  private pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.stats.paused = true;
      this.deps.metrics.fileDropPaused.labels(this.config.id).set(1);
      this.setHealth('running', 'paused: the buffer is full; files stay in the folder until delivery makes room');
      this.log.warn({ pending: this.tracker.size }, 'buffer full: file_drop paused; files stay where they are and are taken once there is room');
    }
    if (this.resumeTimer || this.stopping) return;
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      this.paused = false; // try again; the next refusal pauses again with a longer wait
      this.pump();
    }, this.backoffMs);
    this.backoffMs = Math.min(FULL_BACKOFF_MAX_MS, this.backoffMs * 2);
  }

  private resumed(): void {
    this.backoffMs = FULL_BACKOFF_MIN_MS;
    if (this.stats.paused) {
      this.stats.paused = false;
      this.deps.metrics.fileDropPaused.labels(this.config.id).set(0);
      this.setHealth('running', `watching ${this.config.path}`);
      this.log.info('buffer has room again: file_drop resumed');
    }
  }

  private prune(): void {
    const days = this.config.remember_files_days;
    if (days <= 0) return;
    this.deps.buffer.pruneFiles(this.config.id, days * 86_400_000).catch((err: unknown) => this.log.warn({ err: { code: errorCode(err) } }, 'pruning remembered file hashes failed; will retry'));
  }

  private noteError(message: string, fields: object, advice?: string): void {
    this.stats.lastError = message;
    this.log.warn(fields, advice ? `${message}; ${advice}` : message);
  }

  private updatePending(): void {
    this.stats.pending = this.tracker.size;
    this.deps.metrics.fileDropPending.labels(this.config.id).set(this.tracker.size);
  }

  private setHealth(state: SourceHealth['state'], message: string): void {
    this.healthValue = { state, message, since: new Date().toISOString() };
  }
}

async function ensureDir(dir: string): Promise<string> {
  await mkdir(resolve(dir), { recursive: true });
  return realpath(resolve(dir));
}

function isWithin(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function errorCode(err: unknown): string {
  if (err instanceof FerryError) return err.code;
  return (err as NodeJS.ErrnoException)?.code ?? (err instanceof Error ? err.message : String(err));
}
