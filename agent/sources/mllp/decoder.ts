// Streaming MLLP frame decoder: <VT> payload <FS><CR>, bytes in any split across reads.
//
// Rules (DESIGN.md): bytes outside a frame are discarded; a new VT inside a frame restarts the frame;
// an FS not followed by CR is payload. A frame larger than maxFrameBytes is not kept: the decoder
// keeps only its head (enough to address a rejection) and counts the rest, so the stream stays in
// sync and memory per connection stays bounded whatever a sender does.

export const VT = 0x0b;
export const FS = 0x1c;
export const CR = 0x0d;

/** How much of an oversized frame is kept to read its MSH and answer it. */
export const OVERSIZE_HEAD_BYTES = 64 * 1024;

export type Frame =
  | { readonly kind: 'frame'; readonly payload: Buffer }
  | { readonly kind: 'oversize'; readonly head: Buffer; readonly size: number };

export class MllpDecoder {
  private parts: Buffer[] = [];
  private length = 0;
  private inside = false;
  private oversize = false;
  private pendingFs = false;
  /** Frames begun so far (restarts included): lets the caller time each frame separately. */
  framesStarted = 0;
  discardedBytes = 0;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Frame) => void,
  ) {}

  /** True while a frame has begun and not ended. */
  get inFrame(): boolean {
    return this.inside;
  }

  /** Bytes held for the frame being read (at most maxFrameBytes, or the head of an oversized one). */
  get bufferedBytes(): number {
    return this.oversize ? Math.min(this.length, OVERSIZE_HEAD_BYTES) : this.length;
  }

  push(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    // Positions of the next VT and FS at or after i; recomputed only once i passes them, so a
    // chunk holding many frames is scanned once, not once per frame.
    let nextVt = -2;
    let nextFs = -2;
    while (i < n) {
      if (this.pendingFs) {
        this.pendingFs = false;
        if (chunk[i] === CR) {
          this.emit();
          i++;
          continue;
        }
        this.append(Buffer.of(FS));
      }
      if (nextVt !== -1 && nextVt < i) nextVt = chunk.indexOf(VT, i);
      if (!this.inside) {
        if (nextVt === -1) {
          this.discardedBytes += n - i;
          return;
        }
        this.discardedBytes += nextVt - i;
        this.begin();
        i = nextVt + 1;
        continue;
      }
      if (nextFs !== -1 && nextFs < i) nextFs = chunk.indexOf(FS, i);
      if (nextVt !== -1 && (nextFs === -1 || nextVt < nextFs)) {
        // A new start block inside a frame: the sender gave up on the old one.
        this.discardedBytes += this.length + (nextVt - i);
        this.begin();
        i = nextVt + 1;
        continue;
      }
      if (nextFs === -1) {
        this.append(chunk.subarray(i));
        return;
      }
      if (nextFs > i) this.append(chunk.subarray(i, nextFs));
      if (nextFs + 1 < n) {
        if (chunk[nextFs + 1] === CR) {
          this.emit();
          i = nextFs + 2;
        } else {
          this.append(chunk.subarray(nextFs, nextFs + 1));
          i = nextFs + 1;
        }
      } else {
        this.pendingFs = true;
        i = nextFs + 1;
      }
    }
  }

  private begin(): void {
    this.parts = [];
    this.length = 0;
    this.oversize = false;
    this.inside = true;
    this.framesStarted++;
  }

  private append(bytes: Buffer): void {
    const kept = this.oversize ? Math.min(this.length, OVERSIZE_HEAD_BYTES) : this.length;
    this.length += bytes.length;
    if (!this.oversize && this.length > this.maxFrameBytes) {
      this.oversize = true;
      // Keep only the head; drop references to the rest so it can be collected.
      const head = Buffer.concat(this.parts).subarray(0, Math.min(OVERSIZE_HEAD_BYTES, kept));
      this.parts = head.length > 0 ? [Buffer.from(head)] : [];
    }
    if (this.oversize) {
      const room = OVERSIZE_HEAD_BYTES - Math.min(kept, OVERSIZE_HEAD_BYTES);
      if (room > 0) this.parts.push(Buffer.from(bytes.subarray(0, room)));
      return;
    }
    this.parts.push(bytes);
  }

  private emit(): void {
    const parts = this.parts;
    const frame: Frame = this.oversize
      ? { kind: 'oversize', head: Buffer.concat(parts), size: this.length }
      : { kind: 'frame', payload: parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.length) };
    this.parts = [];
    this.length = 0;
    this.oversize = false;
    this.inside = false;
    this.onFrame(frame);
  }
}

/** Wraps a response in MLLP framing. */
export function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 3);
  out[0] = VT;
  payload.copy(out, 1);
  out[payload.length + 1] = FS;
  out[payload.length + 2] = CR;
  return out;
}
