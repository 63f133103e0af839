// One MLLP connection: decode frames, hand each to the frame handler, and write the responses back
// in the order the frames arrived, whatever order their commits finish in.
//
// Memory stays bounded per connection: the decoder holds at most one frame (or the head of an
// oversized one); reading pauses while too many frames await their commit or while the sender is
// not reading its ACKs; a frame left half-sent past its deadline closes the connection.

import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { MllpDecoder, frame, type Frame } from './decoder.js';
import type { FrameHandler } from './frame-handler.js';

export interface ConnectionLimits {
  readonly maxMessageBytes: number;
  readonly partialFrameTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Frames awaiting their response before reading pauses. */
  readonly maxPendingFrames: number;
  /** Payload bytes awaiting their response before reading pauses. */
  readonly maxPendingBytes: number;
}

interface PendingResponse {
  done: boolean;
  response: Buffer | null;
  readonly bytes: number;
}

export class MllpConnection {
  private readonly decoder: MllpDecoder;
  private readonly queue: PendingResponse[] = [];
  private pendingBytes = 0;
  private frameTimer: NodeJS.Timeout | undefined;
  private timedFrame = -1;
  private writeBlocked = false;
  private paused = false;
  private closing = false;
  private drained: (() => void) | undefined;
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly handler: FrameHandler,
    private readonly limits: ConnectionLimits,
    private readonly log: Logger,
  ) {
    this.decoder = new MllpDecoder(limits.maxMessageBytes, (f) => this.onFrame(f));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay(true);
    socket.setTimeout(limits.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('timeout', () => {
      this.log.info({ idle_timeout_secs: limits.idleTimeoutMs / 1000 }, 'MLLP connection idle past idle_timeout; closing it');
      this.close();
    });
    socket.on('drain', () => {
      this.writeBlocked = false;
      this.updateFlow();
    });
    socket.on('error', (err) => this.log.debug({ err: { code: (err as NodeJS.ErrnoException).code } }, 'MLLP socket error'));
    socket.on('close', () => this.clearFrameTimer());
  }

  /** Takes no new frames, lets the ones already read be answered, then closes. */
  drain(): Promise<void> {
    this.closing = true;
    // Keep reading and discard (onData ignores everything once closing): a paused socket never
    // sees the peer's FIN behind unread bytes, so 'close' would wait for the shutdown deadline.
    this.socket.resume();
    this.clearFrameTimer();
    if (this.queue.length === 0) this.socket.end();
    else this.drained = () => this.socket.end();
    return this.closed;
  }

  /** Closes at once; frames whose commit is in flight still commit, but their ACK is not sent. */
  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Closes after a timeout: frames already read still get their response (drain); whatever the peer
   * sends from now on (the rest of a frame cut off at its deadline) is discarded, never stored.
   */
  private close(): void {
    void this.drain();
    // A peer that never finishes the close handshake must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    this.decoder.push(chunk);
    this.watchPartialFrame();
  }

  private watchPartialFrame(): void {
    if (!this.decoder.inFrame) {
      this.clearFrameTimer();
      return;
    }
    if (this.frameTimer && this.timedFrame === this.decoder.framesStarted) return;
    this.clearFrameTimer();
    this.timedFrame = this.decoder.framesStarted;
    this.frameTimer = setTimeout(() => {
      this.log.warn(
        { partial_frame_timeout_secs: this.limits.partialFrameTimeoutMs / 1000, buffered_bytes: this.decoder.bufferedBytes },
        'MLLP frame not completed within partial_frame_timeout; discarding it and closing the connection',
      );
      this.close();
    }, this.limits.partialFrameTimeoutMs);
    this.frameTimer.unref();
  }

  private clearFrameTimer(): void {
    if (this.frameTimer) clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
  }

  private onFrame(f: Frame): void {
    const entry: PendingResponse = { done: false, response: null, bytes: f.kind === 'frame' ? f.payload.length : f.head.length };
    this.queue.push(entry);
    this.pendingBytes += entry.bytes;
    this.updateFlow();
    this.handler.handle(f).then(
      (response) => this.complete(entry, response),
      (err: unknown) => {
        // The handler answers every failure itself; reaching here is a bug, so close rather than guess.
        this.log.error({ err }, 'MLLP frame handling failed unexpectedly; closing the connection');
        this.complete(entry, null);
        this.socket.destroy();
      },
    );
  }

  private complete(entry: PendingResponse, response: Buffer | null): void {
    entry.done = true;
    entry.response = response;
    this.flush();
  }

  /** Writes every finished response at the head of the queue, in arrival order, in one write. */
  private flush(): void {
    let out: Buffer[] | undefined;
    while (this.queue.length > 0 && this.queue[0]!.done) {
      const entry = this.queue.shift()!;
      this.pendingBytes -= entry.bytes;
      if (entry.response) (out ??= []).push(frame(entry.response));
    }
    if (out && !this.socket.destroyed) {
      const ok = this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      if (!ok) this.writeBlocked = true;
    }
    this.updateFlow();
    if (this.queue.length === 0 && this.drained) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }

  private updateFlow(): void {
    if (this.closing) return;
    const over = this.writeBlocked || this.queue.length >= this.limits.maxPendingFrames || this.pendingBytes >= this.limits.maxPendingBytes;
    if (over && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}
