import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RecentKeys } from './recent-keys.js';

const key = (n: number): Buffer => createHash('sha256').update(String(n)).digest().subarray(0, 16);

describe('RecentKeys', () => {
  it('never forgets a key within the window (no false negatives) and rules most others out', () => {
    const filter = new RecentKeys(60_000, 64 * 1024);
    for (let i = 0; i < 20_000; i++) filter.add(key(i));
    for (let i = 0; i < 20_000; i++) expect(filter.mightContain(key(i))).toBe(true);
    let falsePositives = 0;
    for (let i = 20_000; i < 40_000; i++) if (filter.mightContain(key(i))) falsePositives++;
    // 512 Kibit for 20k keys with 7 probes: about 0.01% expected; allow a wide margin.
    expect(falsePositives).toBeLessThan(200);
  });

  it('keeps a key for at least the window across a rotation, and drops it after two', () => {
    let now = 1_000_000;
    const filter = new RecentKeys(1000, 1024, () => now);
    filter.add(key(1));
    now += 999;
    expect(filter.mightContain(key(1))).toBe(true);
    now += 2; // first rotation: the key moves to the previous generation
    expect(filter.mightContain(key(1))).toBe(true);
    filter.add(key(2));
    now += 1000; // second rotation: key 1 is older than the window now
    expect(filter.mightContain(key(1))).toBe(false);
    expect(filter.mightContain(key(2))).toBe(true);
    now += 5000; // long silence: everything is stale
    expect(filter.mightContain(key(2))).toBe(false);
  });
});
