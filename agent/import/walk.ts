// Lists the candidate files of an import tree in a stable order (so a resumed import walks the
// same way), with sizes for the progress bar. Symlinks and special files are listed as refused.
// Synchronous calls: an import is a command of its own with nothing else to serve meanwhile, and
// one thread-pool round trip per lstat made the walk of 10,000 files take about 0.7 s of wall time.

import { lstatSync, readdirSync, type Dirent } from 'node:fs';
import { join, relative } from 'node:path';

export interface TreeEntry {
  readonly abs: string;
  /** Relative to the import root, "/" separators. */
  readonly rel: string;
  readonly size: number;
  /** Set for entries that are never opened: symlinks, devices, sockets, pipes. */
  readonly refused?: 'symlink' | 'not_regular_file';
}

export async function walkTree(root: string, accept: (rel: string) => boolean): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const visit = (dir: string): void => {
    const entries: Dirent[] = readdirSync(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split('\\').join('/');
      if (e.isDirectory()) {
        visit(abs);
        continue;
      }
      if (!accept(rel)) continue;
      if (e.isSymbolicLink()) out.push({ abs, rel, size: 0, refused: 'symlink' });
      else if (!e.isFile()) out.push({ abs, rel, size: 0, refused: 'not_regular_file' });
      else out.push({ abs, rel, size: lstatSync(abs).size });
    }
  };
  visit(root);
  return out;
}
