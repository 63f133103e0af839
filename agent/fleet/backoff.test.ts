import { describe, expect, it } from 'vitest';
import { RECONNECT_MAX_DELAY_MS, ReconnectBackoff } from './backoff.js';

describe('ReconnectBackoff (exponential, full jitter)', () => {
  it('doubles the window per failed attempt up to the cap, and starts over after reset', () => {
    const top = new ReconnectBackoff({ baseMs: 2000, random: () => 0.999999 });
    const delays = Array.from({ length: 8 }, () => top.next());
    // ~ the top of each window: 2 s, 4 s, 8 s, ... capped at 60 s.
    expect(delays).toEqual([1999, 3999, 7999, 15999, 31999, 59999, 59999, 59999]);
    top.reset();
    expect(top.next()).toBe(1999);
    const bottom = new ReconnectBackoff({ baseMs: 2000, random: () => 0 });
    expect(Array.from({ length: 5 }, () => bottom.next())).toEqual([0, 0, 0, 0, 0]);
  });

  it('keeps every delay inside [0, min(cap, base·2^attempt)) with the real random source, also after many attempts', () => {
    const outside: string[] = [];
    for (let agent = 0; agent < 200; agent++) {
      const b = new ReconnectBackoff({ baseMs: 500, capMs: 10_000 });
      for (let attempt = 0; attempt < 100; attempt++) {
        const window = Math.min(10_000, 500 * 2 ** attempt);
        const d = b.next();
        if (!(Number.isInteger(d) && d >= 0 && d < window)) outside.push(`agent ${agent} attempt ${attempt}: ${d} (window ${window})`);
      }
    }
    expect(outside).toEqual([]);
  });

  it('spreads a fleet that lost its broker at once evenly over the window, instead of one instant', () => {
    const agents = 5000;
    const firstDelays = Array.from({ length: agents }, () => new ReconnectBackoff({ baseMs: 2000 }).next());
    // Ten 200 ms buckets: uniform means ~500 agents in each (σ ≈ 21); a fixed delay would put all 5,000 in one.
    const buckets = new Array<number>(10).fill(0);
    for (const d of firstDelays) buckets[Math.floor(d / 200)]!++;
    for (const n of buckets) {
      expect(n).toBeGreaterThan(380);
      expect(n).toBeLessThan(620);
    }
    expect(new Set(firstDelays).size).toBeGreaterThan(1500);
    // The third attempt of the agents still failing spreads over a window four times as wide.
    const third = Array.from({ length: agents }, () => {
      const b = new ReconnectBackoff({ baseMs: 2000 });
      b.next();
      b.next();
      return b.next();
    });
    expect(Math.max(...third)).toBeGreaterThan(7000);
    expect(Math.max(...third)).toBeLessThan(8000);
    expect(third.filter((d) => d < 2000).length).toBeLessThan(agents * 0.35);
  });

  it('never has a cap below the base delay', () => {
    const b = new ReconnectBackoff({ baseMs: 90_000, random: () => 0.5 });
    expect(b.window()).toBe(90_000);
    b.next();
    expect(b.window()).toBe(90_000);
    expect(new ReconnectBackoff({ baseMs: 1000 }).window()).toBe(1000);
    expect(RECONNECT_MAX_DELAY_MS).toBe(60_000);
  });

  it('stops widening at 32 × a short base (so tests and small sites with a short delay stay quick), 60 s for the default 2 s', () => {
    const windows = (baseMs: number): number[] => {
      const b = new ReconnectBackoff({ baseMs, random: () => 0 });
      return Array.from({ length: 10 }, () => {
        const w = b.window();
        b.next();
        return w;
      });
    };
    expect(windows(200)).toEqual([200, 400, 800, 1600, 3200, 6400, 6400, 6400, 6400, 6400]);
    expect(windows(2000)).toEqual([2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000, 60000]);
  });
});
