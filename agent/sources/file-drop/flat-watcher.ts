// Watches one folder (not its sub-folders) with a single inotify watch (fs.watch), for the common
// flat drop folder. Why not chokidar here: chokidar puts a watcher on every file and, on changes,
// re-lists the folder with an lstat of every entry (throttled to once a second); with thousands of
// files waiting that cost dominated (benchmark: 10,000 files renamed in, 78-154 files/s, lstat the
// top CPU entry). Here each event costs one lstat of the one name it reports. chokidar still serves
// `recursive` and `polling` (network shares), where its tree handling and stat polling are needed.
//
// Events can be missed (inotify queue overflow, a watch re-created): a names-only re-listing every
// RESCAN_MS reports names it has not reported before, and the folder is listed whole at start.

import { watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface FolderEvents {
  /** A name appeared or changed (the caller lstat's it). */
  seen(abs: string): void;
  error(err: Error): void;
}

const RESCAN_MS = 5_000;

export class FlatWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly events: FolderEvents,
  ) {}

  /** Starts watching, then reports every name already in the folder (startup reconciliation). */
  static async start(dir: string, events: FolderEvents): Promise<FlatWatcher> {
    const w = new FlatWatcher(dir, events);
    w.watcher = watch(dir, { persistent: true }, (_type, filename) => {
      if (w.closed) return;
      if (filename === null) {
        void w.rescan(); // the platform did not say which name: look at all of them
        return;
      }
      events.seen(join(dir, filename.toString()));
    });
    w.watcher.on('error', (err) => events.error(err));
    await w.rescan();
    w.timer = setInterval(() => void w.rescan(), RESCAN_MS);
    w.timer.unref();
    return w;
  }

  private async rescan(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (!this.closed) this.events.error(err as Error);
      return;
    }
    if (this.closed) return;
    for (const name of names) this.events.seen(join(this.dir, name));
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.watcher?.close();
    return Promise.resolve();
  }
}
