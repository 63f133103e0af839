import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CR, FS, MllpDecoder, OVERSIZE_HEAD_BYTES, VT, frame, type Frame } from './decoder.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const framed = (s: string | Buffer): Buffer => Buffer.concat([Buffer.of(VT), typeof s === 'string' ? b(s) : s, Buffer.of(FS, CR)]);

function collect(maxFrameBytes = 1024): { decoder: MllpDecoder; frames: Frame[] } {
  const frames: Frame[] = [];
  const decoder = new MllpDecoder(maxFrameBytes, (f) => frames.push(f));
  return { decoder, frames };
}

function payloads(frames: Frame[]): string[] {
  return frames.map((f) => (f.kind === 'frame' ? f.payload.toString('latin1') : `<oversize ${f.size}>`));
}

describe('MllpDecoder: basics', () => {
  it('decodes one frame', () => {
    const { decoder, frames } = collect();
    decoder.push(framed('MSH|^~\\&|A\r'));
    expect(payloads(frames)).toEqual(['MSH|^~\\&|A\r']);
    expect(decoder.inFrame).toBe(false);
    expect(decoder.bufferedBytes).toBe(0);
    expect(decoder.framesStarted).toBe(1);
    expect(decoder.discardedBytes).toBe(0);
  });

  it('decodes an empty frame as an empty payload', () => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.of(VT, FS, CR));
    expect(frames.length).toBe(1);
    expect(frames[0]?.kind).toBe('frame');
    expect(frames[0]?.kind === 'frame' && frames[0].payload.length).toBe(0);
  });

  it('decodes several frames in one chunk, in order', () => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.concat([framed('one'), framed('two'), framed(''), framed('four')]));
    expect(payloads(frames)).toEqual(['one', 'two', '', 'four']);
    expect(decoder.framesStarted).toBe(4);
  });

  it('decodes a frame fed one byte at a time', () => {
    const { decoder, frames } = collect();
    const bytes = Buffer.concat([framed('abc\x1cdef'), framed('g')]);
    for (const byte of bytes) decoder.push(Buffer.of(byte));
    expect(payloads(frames)).toEqual(['abc\x1cdef', 'g']);
  });

  it('discards and counts bytes outside frames (including stray FS and CR)', () => {
    const { decoder, frames } = collect();
    decoder.push(b('junk\x1c\r'));
    decoder.push(Buffer.concat([b('xx'), framed('A'), b('\r\n\x1c\ryy'), framed('B'), b('tail')]));
    expect(payloads(frames)).toEqual(['A', 'B']);
    expect(decoder.discardedBytes).toBe(6 + 2 + 6 + 4);
    expect(decoder.inFrame).toBe(false);
  });

  it('an FS not followed by CR is payload', () => {
    const { decoder, frames } = collect();
    decoder.push(framed('a\x1cb\x1c\x1cc\x1c'));
    expect(payloads(frames)).toEqual(['a\x1cb\x1c\x1cc\x1c']);
  });

  it('an FS at the end of one chunk and CR at the start of the next ends the frame', () => {
    const { decoder, frames } = collect();
    decoder.push(b('\x0bpayload\x1c'));
    expect(frames.length).toBe(0);
    expect(decoder.inFrame).toBe(true);
    decoder.push(b('\r'));
    expect(payloads(frames)).toEqual(['payload']);
    expect(decoder.inFrame).toBe(false);
  });

  it('an FS at the end of one chunk and a non-CR next keeps the FS as payload', () => {
    const { decoder, frames } = collect();
    decoder.push(b('\x0bab\x1c'));
    decoder.push(Buffer.alloc(0));
    decoder.push(b('cd\x1c\r'));
    expect(payloads(frames)).toEqual(['ab\x1ccd']);
  });

  it('a VT inside a frame restarts it: the partial is dropped and counted', () => {
    const { decoder, frames } = collect();
    decoder.push(b('\x0bpartial one'));
    decoder.push(b('more\x0bfresh\x1c\r'));
    expect(payloads(frames)).toEqual(['fresh']);
    expect(decoder.framesStarted).toBe(2);
    expect(decoder.discardedBytes).toBe('partial onemore'.length);
  });

  it('a VT right after a pending FS restarts the frame', () => {
    const { decoder, frames } = collect();
    decoder.push(b('\x0bold\x1c'));
    decoder.push(b('\x0bnew\x1c\r'));
    expect(payloads(frames)).toEqual(['new']);
    expect(decoder.discardedBytes).toBe(4); // "old" and its FS
  });

  it('inFrame and bufferedBytes follow a partial frame', () => {
    const { decoder } = collect();
    expect(decoder.inFrame).toBe(false);
    decoder.push(b('zz\x0b12345'));
    expect(decoder.inFrame).toBe(true);
    expect(decoder.bufferedBytes).toBe(5);
    decoder.push(b('678'));
    expect(decoder.bufferedBytes).toBe(8);
    decoder.push(b('\x1c\r'));
    expect(decoder.inFrame).toBe(false);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('emitted payloads are independent of later chunks', () => {
    const { decoder, frames } = collect();
    decoder.push(b('\x0bAB'));
    decoder.push(b('CD\x1c\r\x0bEF\x1c\r'));
    expect(payloads(frames)).toEqual(['ABCD', 'EF']);
  });
});

describe('MllpDecoder: oversize frames', () => {
  it('a frame of exactly maxFrameBytes is a frame; one byte more is oversize', () => {
    const { decoder, frames } = collect(10);
    decoder.push(framed('0123456789'));
    decoder.push(framed('0123456789A'));
    decoder.push(framed('ok'));
    expect(frames.map((f) => f.kind)).toEqual(['frame', 'oversize', 'frame']);
    const o = frames[1];
    expect(o?.kind === 'oversize' && o.size).toBe(11);
    expect(o?.kind === 'oversize' && o.head.toString('latin1')).toBe('0123456789A');
    expect(payloads(frames)[2]).toBe('ok');
  });

  it('keeps exactly the first OVERSIZE_HEAD_BYTES of a large oversize frame and counts the rest', () => {
    const { decoder, frames } = collect(1000);
    const payload = Buffer.alloc(OVERSIZE_HEAD_BYTES * 3 + 17);
    for (let i = 0; i < payload.length; i++) payload[i] = 0x20 + (i % 90);
    payload.write('MSH|^~\\&|A|B|C|D|T||ADT^A01|BIG1|P|2.5\r', 0, 'latin1');
    const stream = Buffer.concat([framed(payload), framed('after')]);
    let max = 0;
    for (let i = 0; i < stream.length; i += 4093) {
      decoder.push(stream.subarray(i, i + 4093));
      max = Math.max(max, decoder.bufferedBytes);
    }
    expect(max).toBeLessThanOrEqual(OVERSIZE_HEAD_BYTES);
    expect(frames.length).toBe(2);
    const o = frames[0];
    if (o?.kind !== 'oversize') throw new Error('expected oversize');
    expect(o.size).toBe(payload.length);
    expect(o.head.length).toBe(OVERSIZE_HEAD_BYTES);
    expect(o.head.equals(payload.subarray(0, OVERSIZE_HEAD_BYTES))).toBe(true);
    expect(payloads(frames)[1]).toBe('after');
  });

  it('an oversize frame restarted by a VT is dropped, and the next frame is normal', () => {
    const { decoder, frames } = collect(4);
    decoder.push(b('\x0b0123456789'));
    decoder.push(b('\x0babc\x1c\r'));
    expect(payloads(frames)).toEqual(['abc']);
    expect(decoder.discardedBytes).toBe(10);
  });
});

describe('frame()', () => {
  it('wraps a payload in VT ... FS CR', () => {
    expect([...frame(b('AB'))]).toEqual([VT, 0x41, 0x42, FS, CR]);
    expect([...frame(Buffer.alloc(0))]).toEqual([VT, FS, CR]);
  });
});

// ---- property tests ----

/** Payload bytes: anything but VT and FS, or anything but VT with FS never followed by CR. */
const plainPayload = fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a.map((x) => (x === VT ? 0x41 : x === FS ? 0x42 : x))));
const fsPayload = fc.uint8Array({ maxLength: 120 }).map((a) => {
  const out = Buffer.from(a.map((x) => (x === VT ? 0x41 : x % 7 === 0 ? FS : x)));
  for (let i = 0; i + 1 < out.length; i++) if (out[i] === FS && out[i + 1] === CR) out[i + 1] = 0x43;
  return out;
});
const payload = fc.oneof(plainPayload, fsPayload);
/** Junk between frames: any bytes but VT (FS and CR included). */
const junk = fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a.map((x) => (x === VT ? 0x1c : x))));

interface Planned {
  readonly junk: Buffer;
  /** A frame begun and abandoned (restarted by the next VT), or null. */
  readonly aborted: Buffer | null;
  readonly payload: Buffer;
}

const plan = fc.record({ junk, aborted: fc.option(payload, { freq: 4 }), payload });

function buildStream(items: readonly Planned[], trailing: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (const it of items) {
    parts.push(it.junk);
    if (it.aborted) parts.push(Buffer.of(VT), it.aborted);
    parts.push(framed(it.payload));
  }
  parts.push(trailing);
  return Buffer.concat(parts);
}

/** Cuts a stream at the given points (any order, duplicates allowed). */
function cut(stream: Buffer, points: readonly number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (stream.length + 1)))].sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of at) {
    chunks.push(stream.subarray(prev, p));
    prev = p;
  }
  chunks.push(stream.subarray(prev));
  return chunks;
}

describe('MllpDecoder: properties', () => {
  it('any frames, junk, restarts and chunking decode to exactly the sent frames', () => {
    fc.assert(
      fc.property(fc.array(plan, { maxLength: 8 }), junk, fc.array(fc.nat(), { maxLength: 30 }), (items, trailing, points) => {
        const stream = buildStream(items, trailing);
        const { decoder, frames } = collect(1 << 20);
        for (const chunk of cut(stream, points)) decoder.push(chunk);
        expect(frames.map((f) => f.kind)).toEqual(items.map(() => 'frame'));
        expect(frames.map((f) => (f.kind === 'frame' ? f.payload.toString('hex') : ''))).toEqual(items.map((i) => i.payload.toString('hex')));
        expect(decoder.framesStarted).toBe(items.length + items.filter((i) => i.aborted).length);
        const dropped = items.reduce((n, i) => n + i.junk.length + (i.aborted?.length ?? 0), trailing.length);
        expect(decoder.discardedBytes).toBe(dropped);
        expect(decoder.inFrame).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('several whole frames per chunk and frames split across chunks give the same result', () => {
    fc.assert(
      fc.property(fc.array(payload, { minLength: 1, maxLength: 10 }), fc.integer({ min: 1, max: 64 }), (ps, size) => {
        const stream = Buffer.concat(ps.map((p) => framed(p)));
        const { decoder, frames } = collect(1 << 20);
        for (let i = 0; i < stream.length; i += size) decoder.push(stream.subarray(i, i + size));
        expect(frames.map((f) => (f.kind === 'frame' ? f.payload.toString('hex') : 'x'))).toEqual(ps.map((p) => p.toString('hex')));
      }),
    );
  });

  it('oversize frames come out as oversize with their exact size and head; the stream stays in sync; memory stays bounded', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.array(plan, { maxLength: 8 }), junk, fc.array(fc.nat(), { maxLength: 30 }), (max, items, trailing, points) => {
        const stream = buildStream(items, trailing);
        const { decoder, frames } = collect(max);
        const bound = Math.max(max, OVERSIZE_HEAD_BYTES);
        for (const chunk of cut(stream, points)) {
          decoder.push(chunk);
          expect(decoder.bufferedBytes).toBeLessThanOrEqual(bound);
        }
        expect(frames.length).toBe(items.length);
        items.forEach((item, i) => {
          const f = frames[i];
          if (item.payload.length > max) {
            if (f?.kind !== 'oversize') throw new Error(`frame ${i} should be oversize`);
            expect(f.size).toBe(item.payload.length);
            expect(f.head.equals(item.payload.subarray(0, OVERSIZE_HEAD_BYTES))).toBe(true);
          } else {
            if (f?.kind !== 'frame') throw new Error(`frame ${i} should be a frame`);
            expect(f.payload.equals(item.payload)).toBe(true);
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  it('large oversize frames: head is the first OVERSIZE_HEAD_BYTES, bufferedBytes ≤ max(maxFrameBytes, OVERSIZE_HEAD_BYTES) after every chunk', () => {
    const bigFrame = fc.record({
      size: fc.integer({ min: 0, max: 3 * OVERSIZE_HEAD_BYTES }),
      seed: fc.nat(255),
      withFs: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 * OVERSIZE_HEAD_BYTES }),
        fc.array(bigFrame, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 97, max: 70_000 }),
        (max, specs, chunkSize) => {
          const ps = specs.map(({ size, seed, withFs }) => {
            const p = Buffer.alloc(size);
            for (let i = 0; i < size; i++) {
              const v = (seed + i * 31) & 0xff;
              p[i] = v === VT || v === FS ? 0x20 : v;
            }
            if (withFs) for (let i = 0; i + 1 < size; i += 5000) p[i] = FS; // FS followed by a non-CR byte
            for (let i = 0; i + 1 < size; i++) if (p[i] === FS && p[i + 1] === CR) p[i + 1] = 0x21;
            return p;
          });
          const stream = Buffer.concat(ps.map((p) => Buffer.concat([b('junk'), framed(p)])));
          const { decoder, frames } = collect(max);
          const bound = Math.max(max, OVERSIZE_HEAD_BYTES);
          let peak = 0;
          for (let i = 0; i < stream.length; i += chunkSize) {
            decoder.push(stream.subarray(i, i + chunkSize));
            peak = Math.max(peak, decoder.bufferedBytes);
          }
          expect(peak).toBeLessThanOrEqual(bound);
          expect(frames.length).toBe(ps.length);
          ps.forEach((p, i) => {
            const f = frames[i];
            if (p.length > max) {
              if (f?.kind !== 'oversize') throw new Error('expected oversize');
              expect(f.size).toBe(p.length);
              expect(f.head.length).toBe(Math.min(p.length, OVERSIZE_HEAD_BYTES));
              expect(f.head.equals(p.subarray(0, OVERSIZE_HEAD_BYTES))).toBe(true);
            } else {
              if (f?.kind !== 'frame') throw new Error('expected frame');
              expect(f.payload.equals(p)).toBe(true);
            }
          });
        },
      ),
      { numRuns: 60 },
    );
  });
});
