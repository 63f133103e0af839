import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.js';

describe('Backoff', () => {
  it('doubles its ceiling from the initial delay up to the cap, and starts over after reset', () => {
    const b = new Backoff({ initialMs: 250, maxMs: 30_000, random: () => 0.999999 });
    const delays = Array.from({ length: 10 }, () => b.next());
    expect(delays).toEqual([249, 499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999]);
    b.reset();
    expect(b.next()).toBe(249);
  });

  it('spreads delays over the whole range [0, ceiling) (full jitter), never above it', () => {
    const b = new Backoff({ initialMs: 250, maxMs: 30_000 });
    const byAttempt: number[][] = Array.from({ length: 12 }, () => []);
    for (let round = 0; round < 400; round++) {
      b.reset();
      for (let i = 0; i < 12; i++) byAttempt[i]!.push(b.next());
    }
    byAttempt.forEach((delays, attempt) => {
      const ceiling = Math.min(30_000, 250 * 2 ** attempt);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...delays)).toBeLessThan(ceiling);
      // Full jitter, not "ceiling ± a little": both ends of the range are used.
      expect(Math.min(...delays)).toBeLessThan(ceiling * 0.1);
      expect(Math.max(...delays)).toBeGreaterThan(ceiling * 0.9);
      const mean = delays.reduce((a, d) => a + d, 0) / delays.length;
      expect(mean).toBeGreaterThan(ceiling * 0.4);
      expect(mean).toBeLessThan(ceiling * 0.6);
    });
  });

  it('stays finite and capped after very many attempts', () => {
    const b = new Backoff({ initialMs: 1, maxMs: 500, random: () => 0.5 });
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(250);
    expect(b.ceilingMs()).toBe(500);
  });
});
