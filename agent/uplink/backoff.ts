// Reconnect delays: exponential backoff with full jitter (each delay uniform in [0, min(cap,
// initial·2^attempt)]), so a fleet of agents that lost the control plane together does not
// reconnect together.

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Uniform in [0, 1); injectable for tests. */
  readonly random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  /** The upper bound of the next delay (before jitter). */
  ceilingMs(): number {
    // 2^attempt overflows to Infinity long after min() has capped it; clamp the exponent anyway.
    return Math.min(this.options.maxMs, this.options.initialMs * 2 ** Math.min(this.attempt, 52));
  }

  /** The next delay in ms, and one step further up the schedule. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceilingMs());
    this.attempt++;
    return delay;
  }

  /** After a connection that worked: start again from the initial delay. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
