// Which names in a watched folder (or an import tree) are candidates: include/exclude globs
// relative to the folder, and temporary names skipped by default.

import picomatch from 'picomatch';

export interface FileFilterOptions {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly ignoreTemporary: boolean;
}

/** Writers' in-progress names: dot-files (also any dot-folder on the way), *.tmp, *.part, *.swp, *~. */
export function isTemporaryName(relPath: string): boolean {
  const parts = relPath.split(/[\\/]/);
  if (parts.some((p) => p.startsWith('.'))) return true;
  const name = parts[parts.length - 1] ?? '';
  return /\.(tmp|part|partial|swp|crdownload)$/i.test(name) || name.endsWith('~');
}

/** A predicate on paths relative to the folder, using "/" separators. */
export function compileFileFilter(options: FileFilterOptions): (relPath: string) => boolean {
  const include = picomatch([...options.include], { dot: true });
  const exclude = options.exclude.length > 0 ? picomatch([...options.exclude], { dot: true }) : () => false;
  return (relPath) => {
    const p = relPath.split('\\').join('/');
    if (options.ignoreTemporary && isTemporaryName(p)) return false;
    return include(p) && !exclude(p);
  };
}
