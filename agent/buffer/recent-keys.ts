// A fixed-size, time-windowed Bloom filter over dedupe keys: "certainly not seen within the window"
// without a database round trip. Two generations rotate every windowMs, so a key stays in at least
// one of them for windowMs or longer. False positives only cost an SQL lookup; there are no false
// negatives, so correctness never depends on it. Memory is fixed whatever the rate and window.

const HASHES = 7;

export class RecentKeys {
  private current: Uint32Array;
  private previous: Uint32Array;
  private rotatedAt: number;
  private readonly bits: number;

  constructor(
    private readonly windowMs: number,
    bytesPerGeneration = 4 * 1024 * 1024,
    private readonly clock: () => number = Date.now,
  ) {
    this.bits = bytesPerGeneration * 8;
    this.current = new Uint32Array(bytesPerGeneration / 4);
    this.previous = new Uint32Array(bytesPerGeneration / 4);
    this.rotatedAt = clock();
  }

  /** Records a key (a 16-byte dedupe key, itself a hash: its words seed the probe positions). */
  add(key: Buffer): void {
    this.rotate();
    const h1 = key.readUInt32LE(0);
    const h2 = key.readUInt32LE(4) | 1;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const pos = bit % this.bits;
      this.current[pos >>> 5]! |= 1 << (pos & 31);
    }
  }

  /** False only when the key was certainly not added within the window. */
  mightContain(key: Buffer): boolean {
    this.rotate();
    const h1 = key.readUInt32LE(0);
    const h2 = key.readUInt32LE(4) | 1;
    let inCurrent = true;
    let inPrevious = true;
    for (let i = 0; i < HASHES; i++) {
      const pos = ((h1 + Math.imul(i, h2)) >>> 0) % this.bits;
      const mask = 1 << (pos & 31);
      if ((this.current[pos >>> 5]! & mask) === 0) inCurrent = false;
      if ((this.previous[pos >>> 5]! & mask) === 0) inPrevious = false;
      if (!inCurrent && !inPrevious) return false;
    }
    return true;
  }

  private rotate(): void {
    const now = this.clock();
    const elapsed = now - this.rotatedAt;
    if (elapsed < this.windowMs) return;
    if (elapsed >= 2 * this.windowMs) {
      // Every key in either generation is older than the window: forget them all.
      this.current.fill(0);
      this.previous.fill(0);
    } else {
      const recycled = this.previous.fill(0);
      this.previous = this.current;
      this.current = recycled;
    }
    this.rotatedAt = now;
  }
}
