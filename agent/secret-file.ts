// Writing a file that holds secrets (data keys, agent credentials): owner-only from its first byte,
// and atomic, so a crash leaves either the old file, no file, or the whole new one.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `text` to a fresh temp file created 0600, fsyncs it, runs `beforeRename` (which may throw
 * to abandon the write), renames it over `path`, and fsyncs the directory so the rename survives.
 */
export function writeSecretFileAtomic(path: string, text: string, beforeRename?: () => void): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    beforeRename?.();
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dirFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
