// "Is this file complete yet?" for the file_drop source: every name the watcher reports becomes a
// candidate, and a candidate is complete when it appeared by rename from a temporary name (its
// inode was seen under a `*.tmp`/`*.part`/dot name), or when its size, mtime and inode stayed
// unchanged for stable_secs (by its mtime, or by our own look). Complete files are handed to the
// taker (source.ts), which reads, commits and moves them; this module never opens a file.

import { lstat } from 'node:fs/promises';
import { isAbsolute, relative } from 'node:path';
import type { Logger } from 'pino';
import { isTemporaryName } from './file-filter.js';

/** Inodes of temporary names seen, to recognise a rename into place (bounded). */
const MAX_TEMP_INODES = 10_000;

/** A file in the folder, from first sight until it is taken or gone. */
export interface Candidate {
  readonly abs: string;
  readonly rel: string;
  state: 'checking' | 'waiting' | 'queued' | 'taking' | 'finishing';
  size: number;
  mtimeMs: number;
  ino: number;
  /** Our clock when (size, mtime, inode) were last seen to change. */
  unchangedSince: number;
  renamedIn: boolean;
  recheck: boolean;
  timer?: NodeJS.Timeout;
}

export interface CompletionOptions {
  readonly stableSecs: number;
  readonly ignoreTemporary: boolean;
  /** include/exclude globs (relative path). */
  readonly accept: (rel: string) => boolean;
  readonly log: Logger;
}

export interface CompletionHooks {
  /** A file (not a folder) was seen for the first time. */
  seen(): void;
  /** A candidate is complete (its state is now 'queued'): take it. */
  complete(c: Candidate): void;
  /** The number of candidates changed. */
  pendingChanged(): void;
  stopping(): boolean;
}

export class CompletionTracker {
  private readonly candidates = new Map<string, Candidate>();
  private readonly tempInodes = new Map<string, number>();
  /** The watched folder, real path (set by the source once it is resolved). */
  root = '';

  constructor(
    private readonly options: CompletionOptions,
    private readonly hooks: CompletionHooks,
  ) {}

  get size(): number {
    return this.candidates.size;
  }

  get(abs: string): Candidate | undefined {
    return this.candidates.get(abs);
  }

  /** Cancels every pending re-check (stop). */
  clearTimers(): void {
    for (const c of this.candidates.values()) if (c.timer) clearTimeout(c.timer);
  }

  observe(abs: string): void {
    if (this.hooks.stopping()) return;
    const rel = relative(this.root, abs);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return;
    if (this.options.ignoreTemporary && isTemporaryName(rel)) {
      void this.rememberTemporary(abs);
      return;
    }
    if (!this.options.accept(rel)) return;
    let c = this.candidates.get(abs);
    if (!c) {
      c = { abs, rel, state: 'checking', size: -1, mtimeMs: -1, ino: -1, unchangedSince: Date.now(), renamedIn: false, recheck: false };
      this.candidates.set(abs, c);
    } else if (c.state !== 'waiting') {
      c.recheck = true;
      return;
    }
    void this.check(c);
  }

  forget(abs: string): void {
    const c = this.candidates.get(abs);
    // A file being taken is finished by its own path (it may just have been moved by us).
    if (!c || c.state === 'taking' || c.state === 'finishing') return;
    if (c.timer) clearTimeout(c.timer);
    this.candidates.delete(abs);
    this.hooks.pendingChanged();
  }

  drop(c: Candidate): void {
    if (c.timer) clearTimeout(c.timer);
    if (this.candidates.get(c.abs) === c) this.candidates.delete(c.abs);
    this.hooks.pendingChanged();
  }

  /** Is the file complete? Renamed in from a temporary name, or unchanged for stable_secs (by its mtime or by our own look). */
  async check(c: Candidate): Promise<void> {
    if (c.timer) clearTimeout(c.timer);
    c.timer = undefined;
    c.state = 'checking';
    c.recheck = false;
    let st;
    try {
      st = await lstat(c.abs);
    } catch {
      this.drop(c);
      return;
    }
    if (this.hooks.stopping()) return;
    const now = Date.now();
    if (c.ino === -1) {
      // A sub-folder (the flat watcher reports every name) is not a file to take.
      if (st.isDirectory()) return this.drop(c);
      c.renamedIn = this.tempInodes.delete(`${st.dev}:${st.ino}`);
      this.hooks.seen();
      this.hooks.pendingChanged();
    }
    if (st.size !== c.size || st.mtimeMs !== c.mtimeMs || st.ino !== c.ino) {
      if (c.ino !== -1) c.renamedIn = false;
      c.size = st.size;
      c.mtimeMs = st.mtimeMs;
      c.ino = st.ino;
      c.unchangedSince = now;
    }
    const stableMs = this.options.stableSecs * 1000;
    const complete = !st.isFile() || c.renamedIn || stableMs === 0 || now - st.mtimeMs >= stableMs || now - c.unchangedSince >= stableMs;
    if (complete && !c.recheck) {
      c.state = 'queued';
      this.hooks.complete(c);
      return;
    }
    this.wait(c, Math.min(st.mtimeMs + stableMs, c.unchangedSince + stableMs) - now);
  }

  wait(c: Candidate, delayMs: number): void {
    c.state = 'waiting';
    if (c.timer) clearTimeout(c.timer);
    c.timer = setTimeout(() => void this.check(c), Math.max(50, Math.min(delayMs + 20, 60_000)));
  }

  private async rememberTemporary(abs: string): Promise<void> {
    try {
      const st = await lstat(abs);
      if (!st.isFile()) return;
      const key = `${st.dev}:${st.ino}`;
      this.tempInodes.delete(key);
      this.tempInodes.set(key, Date.now());
      if (this.tempInodes.size > MAX_TEMP_INODES) this.tempInodes.delete(this.tempInodes.keys().next().value!);
      if (this.options.log.isLevelEnabled('debug')) this.options.log.debug({ file: relative(this.root, abs) }, 'temporary file seen: taken at once when renamed into place');
    } catch {
      // Gone already: renamed before we looked, which the stability rule still covers.
    }
  }
}
