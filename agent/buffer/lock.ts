// One writer per buffer file: two processes appending would hand out the same seqs. The agent and
// `ferry-agent import` both open the buffer through MessageBuffer.open, which takes this lock: a
// file beside the buffer (`buffer.db.lock`, mode 0600) created exclusively, holding the owner's pid.
//
// Stale locks: a process killed with SIGKILL leaves its file behind. A lock whose pid no longer
// runs is taken over (removed and created again); one whose pid runs is refused with that pid in
// the message. A pid reused by an unrelated process after a crash reads as "in use": the message
// says which pid and which file to remove if that process is not Ferry.

import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { FerryError } from '../errors.js';

export interface BufferLock {
  readonly path: string;
  release(): void;
}

export function lockPathOf(bufferFile: string): string {
  return `${bufferFile}.lock`;
}

/** Takes the buffer's lock for this process, or throws naming the process that holds it. */
export function acquireBufferLock(bufferFile: string): BufferLock {
  const path = lockPathOf(bufferFile);
  // Two attempts: the second after removing a stale lock.
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new FerryError('buffer_io', `cannot create the buffer lock ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
      const holder = readHolder(path);
      if (holder === 'gone') continue;
      if (holder === undefined && youngerThan(path, 5000)) {
        // Empty and fresh: another process is between creating it and writing its pid.
        throw new FerryError('buffer_io', `the buffer ${bufferFile} is being opened by another process right now (${path} is being written); try again`);
      }
      if (holder !== undefined && isRunning(holder)) {
        const who = holder === process.pid ? 'this process (the buffer is already open)' : `another process (pid ${holder})`;
        throw new FerryError(
          'buffer_io',
          `the buffer ${bufferFile} is in use by ${who}: the agent and ferry-agent import cannot share a buffer; stop the other one first (if pid ${holder} is not Ferry, remove ${path})`,
        );
      }
      // Its owner is gone (killed, power cut): take the lock over.
      try {
        unlinkSync(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new FerryError('buffer_io', `cannot remove the stale buffer lock ${path}`, { cause: e });
      }
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      path,
      release() {
        if (released) return;
        released = true;
        // Only our own lock: never remove one another process took over meanwhile.
        if (readHolder(path) === process.pid) {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
        }
      },
    };
  }
  throw new FerryError('buffer_io', `the buffer lock ${path} keeps appearing: another process is opening the buffer at the same time`);
}

/** The pid in the lock file; undefined when unreadable or empty (a writer killed mid-write: stale). */
function readHolder(path: string): number | undefined | 'gone' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : undefined;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function youngerThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < ms;
  } catch {
    return false;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
