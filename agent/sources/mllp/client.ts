// A small MLLP client: pipelined sends on one connection, responses matched in order. Used by
// `ferry-agent send` (to try a listener by hand), by the tests and by the benchmark.

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { MllpDecoder, frame } from './decoder.js';

export interface MllpClientOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: ConnectionOptions;
  /** Milliseconds to wait for each response; 0 waits forever. */
  readonly responseTimeoutMs?: number;
}

interface Waiter {
  resolve(response: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export class MllpClient {
  private readonly waiters: Waiter[] = [];
  private readonly decoder: MllpDecoder;
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    this.decoder = new MllpDecoder(64 * 1024 * 1024, (f) => {
      const waiter = this.waiters.shift();
      if (!waiter) return;
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.resolve(f.kind === 'frame' ? Buffer.from(f.payload) : f.head);
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    const fail = (err: Error): void => {
      this.closedError ??= err;
      for (const w of this.waiters.splice(0)) {
        if (w.timer) clearTimeout(w.timer);
        w.reject(err);
      }
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed by peer')));
  }

  static connect(options: MllpClientOptions): Promise<MllpClient> {
    return new Promise((resolve, reject) => {
      const onConnect = (): void => {
        socket.off('error', reject);
        resolve(new MllpClient(socket, options.responseTimeoutMs ?? 30_000));
      };
      const socket = options.tls
        ? tlsConnect({ host: options.host, port: options.port, ...options.tls }, onConnect)
        : connect({ host: options.host, port: options.port }, onConnect);
      socket.once('error', reject);
    });
  }

  /** Sends one frame and resolves with the next response on this connection. */
  send(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.closedError) {
        reject(this.closedError);
        return;
      }
      const waiter: Waiter = { resolve, reject, timer: undefined };
      if (this.timeoutMs > 0) {
        waiter.timer = setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error(`no response within ${this.timeoutMs} ms`));
          // Responses are matched by order: after a lost one the connection is out of step.
          this.socket.destroy();
        }, this.timeoutMs);
      }
      this.waiters.push(waiter);
      this.socket.write(frame(payload));
    });
  }

  /** Writes raw bytes (for tests that send broken framing); no response is awaited. */
  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits for the next response without sending anything (e.g. after writeRaw). */
  nextResponse(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, timer: undefined });
    });
  }

  get raw(): Socket {
    return this.socket;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve();
        return;
      }
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }
}

/** MSA-1 and MSA-2 of an ACK, read with the ACK's own delimiters. */
export function readAck(ack: Buffer): { code: string; controlId: string; errorCode?: string } {
  const text = ack.toString('latin1');
  const field = text.charAt(3) || '|';
  const segments = text.split(/\r\n|\r|\n/);
  const msa = segments.find((s) => s.startsWith(`MSA${field}`))?.split(field) ?? [];
  const err = segments.find((s) => s.startsWith(`ERR${field}`))?.split(field);
  const component = text.charAt(4) || '^';
  // ERR-3 (2.5+) or the code subcomponent of ERR-1 (up to 2.4).
  let errorCode: string | undefined;
  if (err) {
    const subcomponent = text.charAt(7) || '&';
    errorCode = err[3] ? err[3].split(component)[0] : err[1]?.split(component)[3]?.split(subcomponent)[0];
  }
  return { code: msa[1] ?? '', controlId: msa[2] ?? '', ...(errorCode ? { errorCode } : {}) };
}
