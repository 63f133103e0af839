// Lists the candidate files of an import tree in a stable order (so a resumed import walks the
// same way), with sizes for the progress bar. Symlinks and special files are listed as refused.

import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
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
  const visit = async (dir: string): Promise<void> => {
    const entries: Dirent[] = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split('\\').join('/');
      if (e.isDirectory()) {
        await visit(abs);
        continue;
      }
      if (!accept(rel)) continue;
      if (e.isSymbolicLink()) out.push({ abs, rel, size: 0, refused: 'symlink' });
      else if (!e.isFile()) out.push({ abs, rel, size: 0, refused: 'not_regular_file' });
      else out.push({ abs, rel, size: (await lstat(abs)).size });
    }
  };
  await visit(root);
  return out;
}
