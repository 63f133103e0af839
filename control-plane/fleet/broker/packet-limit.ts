// A size limit on MQTT packets, in front of aedes (which has none: its parser would buffer a
// 256 MiB PUBLISH whole). PacketSizeScanner follows the frame boundaries of the byte stream —
// fixed header byte, "remaining length" varint, body — without parsing bodies, and says stop as
// soon as a header announces more than the limit. LimitedConnection wraps a socket with it.

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

export class PacketSizeScanner {
  /** Bytes of the current packet's body still to skip. */
  private remaining = 0;
  /** 0: expect a fixed-header byte; 1..4: reading the length varint (that many bytes read). */
  private lengthBytes = 0;
  private length = 0;
  private inHeader = false;

  constructor(private readonly maxPacketBytes: number) {}

  /** Feeds bytes in stream order; false once a packet is too large or its length is malformed. */
  feed(chunk: Uint8Array): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, chunk.length - i);
        this.remaining -= skip;
        i += skip;
        continue;
      }
      const byte = chunk[i++]!;
      if (!this.inHeader) {
        // The first byte: packet type and flags. Any value is the parser's business.
        this.inHeader = true;
        this.lengthBytes = 0;
        this.length = 0;
        continue;
      }
      this.length += (byte & 0x7f) * 128 ** this.lengthBytes;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes >= 4) return false; // a fifth length byte is malformed (MQTT 3.1.1 §2.2.3)
        continue;
      }
      // Fixed header is 1 + lengthBytes; the limit counts the whole packet.
      if (1 + this.lengthBytes + this.length > this.maxPacketBytes) return false;
      this.inHeader = false;
      this.remaining = this.length;
    }
    return true;
  }
}

/**
 * A duplex over a socket that lets bytes through to the broker only while every packet is within
 * the limit; a larger one destroys the connection before its body is buffered anywhere.
 */
export class LimitedConnection extends Duplex {
  private readonly scanner: PacketSizeScanner;

  constructor(
    readonly socket: Socket,
    maxPacketBytes: number,
    onTooLarge: () => void,
  ) {
    super({ allowHalfOpen: false });
    this.scanner = new PacketSizeScanner(maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      if (!this.scanner.feed(chunk)) {
        onTooLarge();
        socket.destroy();
        this.destroy();
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed) return callback(new Error('connection closed'));
    this.socket.write(chunk, (err) => callback(err ?? null));
  }

  // mqtt-packet writes each packet as several small pieces (header, length, topic, id, payload)
  // between cork and uncork; without _writev each piece became its own socket write — one syscall
  // per piece, the control plane's largest CPU cost at thousands of agents. One write per batch.
  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed) return callback(new Error('connection closed'));
    this.socket.write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), (err) => callback(err ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(() => callback());
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.socket.destroyed) this.socket.destroy();
    callback(err);
  }
}
