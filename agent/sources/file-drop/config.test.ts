// The file_drop options' cross-checks (proto/policy/sources.ts): folders that would make the
// source take its own output are refused with the path of the offending key.

import { describe, expect, it } from 'vitest';
import { fileDropSourceSchema } from '../../../proto/policy/index.js';

const base = { id: 'drop', type: 'file_drop', path: '/srv/in', archive_dir: '/srv/archive', error_dir: '/srv/error' };

function problems(input: Record<string, unknown>): string[] {
  const r = fileDropSourceSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('file_drop config', () => {
  it('accepts a plain config and fills the defaults', () => {
    const c = fileDropSourceSchema.parse(base);
    expect(c).toMatchObject({ include: ['**/*'], exclude: [], ignore_temporary: true, recursive: false, stable_secs: 2, max_file_bytes: 64 * 1024 * 1024, remember_files_days: 90, delete_after: false });
  });

  it('refuses archive_dir or error_dir equal to the watched folder (also spelled differently), and archive_dir = error_dir', () => {
    expect(problems({ ...base, archive_dir: '/srv/in/' })).toEqual(['archive_dir: archive_dir must not be the watched folder (path)']);
    expect(problems({ ...base, error_dir: '/srv/./in' })).toEqual(['error_dir: error_dir must not be the watched folder (path)']);
    expect(problems({ ...base, error_dir: '/srv/archive' })).toEqual(['error_dir: error_dir must differ from archive_dir']);
  });

  it('needs archive_dir unless delete_after, and not both', () => {
    const { archive_dir: _a, ...noArchive } = base;
    expect(problems(noArchive)).toEqual(['archive_dir: archive_dir is required unless delete_after is true']);
    expect(problems({ ...noArchive, delete_after: true })).toEqual([]);
    expect(problems({ ...base, delete_after: true })).toEqual(['archive_dir: set archive_dir or delete_after: true, not both']);
  });
});
