import { describe, expect, it } from 'vitest';
import { validatePolicy } from './index.js';

describe('policy schema', () => {
  it('accepts the empty (default) policy and fills nothing in', () => {
    const r = validatePolicy({});
    expect(r).toEqual({ ok: true, config: {} });
  });

  it('accepts sources of both types with defaults applied', () => {
    const r = validatePolicy({
      sources: [
        { id: 'adt', type: 'mllp', listen: '0.0.0.0:2576' },
        { id: 'lab', type: 'file_drop', path: '/srv/in', archive_dir: '/srv/archive', error_dir: '/srv/error' },
      ],
      buffer: { max_bytes: '1GiB' },
      log_level: 'debug',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.buffer?.max_bytes).toBe(1024 ** 3);
    expect(r.config.sources?.[0]).toMatchObject({ type: 'mllp', max_message_bytes: 16 * 1024 * 1024, max_connections: 256 });
    expect(r.config.sources?.[1]).toMatchObject({ type: 'file_drop', delete_after: false, recursive: false });
  });

  it('reports every problem at once, each with its path', () => {
    const r = validatePolicy({
      sources: [
        { id: 'adt', type: 'mllp', listen: 'nowhere' },
        { id: 'adt', type: 'mllp', listen: '0.0.0.0:2577', max_connections: -1 },
        { id: 'lab', type: 'file_drop', path: '/in', error_dir: '/err' },
      ],
      buffer: { max_bytes: 'lots', key_file: '/etc/keys' },
      log_level: 'loud',
      extra: true,
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.problems.map((p) => p.path).sort();
    expect(paths).toEqual(
      ['(root)', 'buffer', 'buffer.max_bytes', 'log_level', 'sources[0].listen', 'sources[1].id', 'sources[1].max_connections', 'sources[2].archive_dir'].sort(),
    );
  });
});
