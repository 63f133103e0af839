// Moves a taken file out of the watched folder without ever overwriting anything, durably.
//
// The new name is made with link() (fails if the name exists, so a collision becomes name-1.ext,
// name-2.ext, ...) and the old one removed with unlink(); both directories are fsynced. A crash
// between the two leaves the file in both places: the next attempt sees the archive name already
// holds the same inode and only removes the old name. Where hard links are not supported (some
// network shares) it falls back to an existence check and rename(); across file systems (EXDEV)
// to copy into a temporary name, fsync, then link and unlink.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';

const MAX_COLLISIONS = 10_000;

/** Temporary files of an interrupted move or reason write start with this; swept at start. */
export const PARTIAL_PREFIX = '.ferry-partial-';

/**
 * Moves `from` to `dir/relName` (or a free variant of it); returns the final path. `beforeUnlink`
 * runs once the new name exists and before the old one goes (the reason file of an error move), so
 * a crash in between repeats it on the next attempt instead of losing it.
 */
export async function moveWithoutOverwrite(from: string, dir: string, relName: string, beforeUnlink?: (finalPath: string) => Promise<void>): Promise<string> {
  const target = join(dir, relName);
  const targetDir = dirname(target);
  await mkdir(targetDir, { recursive: true });
  const src = await lstat(from);
  const ext = extname(target);
  const stem = target.slice(0, target.length - ext.length);
  let staged: string | undefined;
  try {
    for (let n = 0; n < MAX_COLLISIONS; n++) {
      const candidate = n === 0 ? target : `${stem}-${n}${ext}`;
      const source = staged ?? from;
      try {
        await link(source, candidate);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') {
          // Already linked here by an attempt a crash interrupted: just finish it.
          const existing = await lstat(candidate).catch(() => undefined);
          if (!staged && existing && existing.ino === src.ino && existing.dev === src.dev) {
            await beforeUnlink?.(candidate);
            await finishMove(from, candidate);
            return candidate;
          }
          continue;
        }
        if (code === 'EXDEV' && !staged) {
          staged = await stageCopy(from, targetDir);
          n--; // retry the same name from the staged copy
          continue;
        }
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
          if (await exists(candidate)) continue;
          await rename(source, candidate);
          await beforeUnlink?.(candidate);
          if (staged) await unlink(from);
          staged = undefined;
          await syncDir(targetDir);
          await syncDir(dirname(from));
          return candidate;
        }
        throw err;
      }
      if (staged) {
        await unlink(staged);
        staged = undefined;
      }
      await beforeUnlink?.(candidate);
      await finishMove(from, candidate);
      return candidate;
    }
    throw new Error(`no free name for the file in ${targetDir} after ${MAX_COLLISIONS} tries`);
  } finally {
    if (staged) await unlink(staged).catch(() => {});
  }
}

async function finishMove(from: string, to: string): Promise<void> {
  await syncDir(dirname(to));
  await unlink(from).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await syncDir(dirname(from));
}

/** A durable copy under a temporary dot-name in the target's folder (cross-device moves). */
async function stageCopy(from: string, targetDir: string): Promise<string> {
  const tmp = join(targetDir, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
  await copyFile(from, tmp, constants.COPYFILE_EXCL);
  const h = await open(tmp, 'r+');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  return tmp;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Deletes a taken file (delete_after) durably. */
export async function deleteDurably(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await syncDir(dirname(path));
}

/** Writes `path` atomically (temporary name, fsync, rename, fsync of the folder). */
export async function writeFileDurably(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, content, { mode: 0o640 });
  const h = await open(tmp, 'r+');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/**
 * fsyncs a folder. Many moves into the same folder share fsyncs (like group commit): a call made
 * while one is running waits for the next, which covers every change made before it started.
 */
export function syncDir(dir: string): Promise<void> {
  const queued = queuedSyncs.get(dir);
  if (queued) return queued;
  const running = runningSyncs.get(dir);
  if (!running) return startSync(dir);
  const next = running.then(() => {
    queuedSyncs.delete(dir);
    return startSync(dir);
  });
  queuedSyncs.set(dir, next);
  return next;
}

const runningSyncs = new Map<string, Promise<void>>();
const queuedSyncs = new Map<string, Promise<void>>();

function startSync(dir: string): Promise<void> {
  const p: Promise<void> = fsyncDir(dir).finally(() => {
    if (runningSyncs.get(dir) === p) runningSyncs.delete(dir);
  });
  runningSyncs.set(dir, p);
  return p;
}

async function fsyncDir(dir: string): Promise<void> {
  let h;
  try {
    h = await open(dir, 'r');
    await h.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the move itself already happened.
  } finally {
    await h?.close().catch(() => {});
  }
}

/** Removes temporary files an interrupted move or reason write left at the top of `dir`. */
export async function sweepPartials(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(PARTIAL_PREFIX)) continue;
    await unlink(join(dir, name)).then(
      () => removed++,
      () => {},
    );
  }
  return removed;
}
