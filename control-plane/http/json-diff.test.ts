import { describe, expect, it } from 'vitest';
import { jsonDiff } from './json-diff.js';

describe('jsonDiff', () => {
  it('lists changed, added and removed leaves by path, through objects and arrays', () => {
    const before = { log_level: 'info', buffer: { max_bytes: '1GiB' }, sources: [{ id: 'a', listen: '0.0.0.0:2575' }, { id: 'b', listen: '0.0.0.0:2576' }] };
    const after = { log_level: 'debug', sources: [{ id: 'a', listen: '0.0.0.0:2577' }], uplink: { enabled: false } };
    expect(jsonDiff(before, after)).toEqual([
      { path: 'log_level', old: 'info', new: 'debug' },
      { path: 'buffer.max_bytes', old: '1GiB' },
      { path: 'sources[0].listen', old: '0.0.0.0:2575', new: '0.0.0.0:2577' },
      { path: 'sources[1].id', old: 'b' },
      { path: 'sources[1].listen', old: '0.0.0.0:2576' },
      { path: 'uplink.enabled', new: false },
    ]);
  });

  it('is empty for equal documents and names the root for a changed scalar', () => {
    expect(jsonDiff({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toEqual([]);
    expect(jsonDiff(1, 2)).toEqual([{ path: '(root)', old: 1, new: 2 }]);
    expect(jsonDiff({ a: 1 }, { a: 1 }, 'config')).toEqual([]);
  });
});
