// Reconnect delays for the fleet connection: exponential backoff with full jitter. After a broker
// restart every agent of a fleet loses its connection at the same instant; a fixed delay brings
// them all back at the same instant too (a connect storm that repeats while the broker struggles).
// Full jitter draws each delay uniformly from [0, min(cap, base·2^attempt)]: the agents spread
// over the whole window, and the window widens while the broker keeps failing them.

/** The widest reconnect window, whatever the attempt (unless the base delay itself is larger). */
export const RECONNECT_MAX_DELAY_MS = 60_000;
/** The window stops doubling at this many times the base (so a short base keeps short waits). */
export const RECONNECT_MAX_FACTOR = 32;

export interface BackoffOptions {
  /** The first attempt's window (reconnect_delay_secs). */
  readonly baseMs: number;
  /** The widest window (default: 32 × base, at most 60 s); never below baseMs. */
  readonly capMs?: number;
  /** Uniform in [0, 1); injectable for tests. */
  readonly random?: () => number;
}

export class ReconnectBackoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions) {
    this.baseMs = Math.max(0, options.baseMs);
    this.capMs = Math.max(this.baseMs, options.capMs ?? Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_MAX_FACTOR * this.baseMs));
    this.random = options.random ?? Math.random;
  }

  /** The upper bound of the next delay's window. */
  window(): number {
    // 2^30 already exceeds any cap; the exponent is bounded so the arithmetic never overflows.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
  }

  /** The delay before the next attempt; each call widens the following window. */
  next(): number {
    const delay = Math.floor(this.random() * this.window());
    this.attempt++;
    return delay;
  }

  /** After a successful connection: the next outage starts from the base window again. */
  reset(): void {
    this.attempt = 0;
  }
}
