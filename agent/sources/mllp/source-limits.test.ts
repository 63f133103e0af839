// The mllp source's limits over real sockets: max_message_bytes, max_connections, the partial-frame
// deadline, the idle timeout, allow_ips, and that one misbehaving sender never delays the others
// nor grows the agent's memory (TCP backpressure reaches it).

import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { realisticMessage } from '../../../test/helpers/messages.js';
import { closedPromise, closesWithin, controlId, refusedCount, sleep, startSource, waitFor, type Harness } from '../../../test/helpers/mllp-harness.js';
import { readSample } from '../../../test/helpers/samples.js';
import { readAck, type MllpClient } from './client.js';
import { frame } from './decoder.js';

const VT = Buffer.of(0x0b);
const FS_CR = Buffer.of(0x1c, 0x0d);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function storedWith(harness: Harness, prefix: string) {
  return (await harness.stored()).filter((r) => r.meta.controlId.startsWith(prefix));
}

/**
 * A 4 KB message whose ACK is as large: the ACK echoes MSH-3..6, so a long sending application makes
 * the ACKs the hog never reads fill the kernel's socket buffers after a few MB instead of hundreds.
 */
function hogMessage(n: number): Buffer {
  return Buffer.from(`MSH|^~\\&|${'HOGAPP'.repeat(650)}|HOGFAC|FERRY|CENTRAL|20261125081500||ADT^A01^ADT_A01|${controlId('HOG', n)}|P|2.5.1\rPID|1||MRN${n}^^^HOGFAC^MR||NOBODY^HOG\r`);
}

/** Sends n messages one after another (each waits for its ACK); returns the codes and the elapsed ms. */
async function sendSequentially(c: MllpClient, prefix: string, n: number): Promise<{ codes: string[]; ms: number; worstMs: number }> {
  const started = Date.now();
  const codes: string[] = [];
  let worstMs = 0;
  for (let i = 0; i < n; i++) {
    const t = Date.now();
    const ack = readAck(await c.send(realisticMessage(prefix, i)));
    worstMs = Math.max(worstMs, Date.now() - t);
    expect(ack.controlId).toBe(controlId(prefix, i));
    codes.push(ack.code);
  }
  return { codes, ms: Date.now() - started, worstMs };
}

describe('max_message_bytes', () => {
  it('answers an oversize frame AR with ERR 104, stores nothing, and the next frame on the connection is accepted', async () => {
    h = await startSource({ source: { max_message_bytes: '4KiB' } });
    const c = await h.client();
    const big = readSample('oru-r01_v2.5.1_dcm4che-cda-xml.hl7');
    expect(big.length).toBeGreaterThan(4096);
    expect(readAck(await c.send(big))).toEqual({ code: 'AR', controlId: '1001127', errorCode: '104' });
    expect(await h.stored()).toHaveLength(0);
    const normal = realisticMessage('AFTERBIG', 1);
    expect(readAck(await c.send(normal))).toEqual({ code: 'AA', controlId: controlId('AFTERBIG', 1) });
    const rows = await h.stored();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.payload.equals(normal)).toBe(true);
    const rejected = await h.metrics.framesRejected.get();
    expect(rejected.values.find((v) => v.labels.code === '104')?.value).toBe(1);
  });

  it('keeps the stream in sync around a 2 MiB frame pipelined between normal ones', async () => {
    h = await startSource({ source: { max_message_bytes: '4KiB' } });
    const c = await h.client();
    const head = realisticMessage('HUGE', 1);
    // A valid MSH, then 2 MiB of OBX text: far beyond what the decoder keeps of an oversize frame.
    const huge = Buffer.concat([head, Buffer.from('OBX|1|TX|||' + 'x'.repeat(2 * 1024 * 1024) + '\r')]);
    const before = realisticMessage('SYNC', 1);
    const after = realisticMessage('SYNC', 2);
    const responses = [c.nextResponse(), c.nextResponse(), c.nextResponse()];
    c.writeRaw(Buffer.concat([frame(before), frame(huge), frame(after)]));
    const acks = (await Promise.all(responses)).map(readAck);
    expect(acks).toEqual([
      { code: 'AA', controlId: controlId('SYNC', 1) },
      { code: 'AR', controlId: controlId('HUGE', 1), errorCode: '104' },
      { code: 'AA', controlId: controlId('SYNC', 2) },
    ]);
    const rows = await h.stored();
    expect(rows.map((r) => r.meta.controlId)).toEqual([controlId('SYNC', 1), controlId('SYNC', 2)]);
    expect(rows[0]!.payload.equals(before) && rows[1]!.payload.equals(after)).toBe(true);
  });

  it('accepts a frame of exactly max_message_bytes', async () => {
    const m = realisticMessage('EXACT', 1);
    h = await startSource({ source: { max_message_bytes: m.length } });
    const c = await h.client();
    expect(readAck(await c.send(m)).code).toBe('AA');
    const over = Buffer.concat([realisticMessage('EXACT', 3), Buffer.from('NTE|1\r')]);
    const overSized = Buffer.concat([over, Buffer.alloc(Math.max(0, m.length + 1 - over.length), 'z')]);
    expect(overSized.length).toBeGreaterThan(m.length);
    expect(readAck(await c.send(overSized)).errorCode).toBe('104');
    expect((await h.stored()).map((r) => r.meta.controlId)).toEqual([controlId('EXACT', 1)]);
  });
});

describe('max_connections', () => {
  it('closes a third connection when max is 2; the two others keep working; a freed slot is reusable', async () => {
    h = await startSource({ source: { max_connections: 2 } });
    const a = await h.client();
    const b = await h.client();
    expect(readAck(await a.send(realisticMessage('CONNA', 1))).code).toBe('AA');
    expect(readAck(await b.send(realisticMessage('CONNB', 1))).code).toBe('AA');

    const third = await h.raw();
    third.on('error', () => {});
    third.write(frame(realisticMessage('CONNC', 1)));
    expect(await closesWithin(third, 3000)).toBe(true);
    expect(await refusedCount(h.metrics, 'max_connections')).toBe(1);
    expect(h.source.stats.connectionsRefused).toBe(1);

    expect(readAck(await a.send(realisticMessage('CONNA', 2))).code).toBe('AA');
    expect(readAck(await b.send(realisticMessage('CONNB', 2))).code).toBe('AA');
    expect(await storedWith(h, 'CONNC')).toHaveLength(0);
    expect((await h.metrics.connections.get()).values[0]?.value).toBe(2);

    // Once one of the two leaves, a new connection is served.
    await a.close();
    await waitFor(() => h!.source.stats.connections === 1, 3000, 'server noticed the close');
    const d = await h.client();
    expect(readAck(await d.send(realisticMessage('CONND', 1))).code).toBe('AA');
    expect(await refusedCount(h.metrics, 'max_connections')).toBe(1);
  });
});

describe('partial_frame_timeout_secs', () => {
  it('closes a connection holding half a frame after the deadline, without touching another connection', async () => {
    h = await startSource({ source: { partial_frame_timeout_secs: 0.3 } });
    const slow = await h.raw();
    const closed = closedPromise(slow);
    const half = realisticMessage('HALF', 1);
    const started = Date.now();
    slow.write(Buffer.concat([VT, half.subarray(0, half.length >> 1)]));
    let closedAt = 0;
    void closed.then(() => (closedAt = Date.now()));

    // Meanwhile another connection is served promptly, before and after the deadline.
    const other = await h.client();
    const result = await (async () => {
      const codes: string[] = [];
      for (let i = 0; Date.now() - started < 700; i++) {
        const t = Date.now();
        codes.push(readAck(await other.send(realisticMessage('BESIDE', i))).code);
        // Generous: a commit's fsync, not the stalled connection, is what this waits for.
        expect(Date.now() - t).toBeLessThan(1000);
        await sleep(40);
      }
      return codes;
    })();
    expect(result.length).toBeGreaterThan(5);
    expect(result.every((c) => c === 'AA')).toBe(true);

    await closed;
    expect(closedAt - started).toBeGreaterThanOrEqual(250);
    expect(closedAt - started).toBeLessThan(3000);
    expect(await storedWith(h, 'HALF')).toHaveLength(0);
    expect(await storedWith(h, 'BESIDE')).toHaveLength(result.length);
  });

  it('does not store the rest of a timed-out frame sent after the deadline', async () => {
    h = await startSource({ source: { partial_frame_timeout_secs: 0.3 } });
    // allowHalfOpen: this sender keeps writing after the server's FIN, as a sender that never reads would.
    const slow = await h.raw({ allowHalfOpen: true });
    slow.on('error', () => {});
    const m = realisticMessage('LATEHALF', 1);
    const ended = new Promise<void>((resolve) => slow.once('end', () => resolve()));
    slow.resume();
    slow.write(Buffer.concat([VT, m.subarray(0, 500)]));
    await ended;
    slow.write(Buffer.concat([m.subarray(500), FS_CR]));
    await sleep(300);
    expect(await storedWith(h, 'LATEHALF')).toHaveLength(0);
  });

  it('times each frame separately: a sender whose frames each arrive in time may take longer in total', async () => {
    h = await startSource({ source: { partial_frame_timeout_secs: 0.5 } });
    const c = await h.client();
    const started = Date.now();
    for (let i = 0; i < 6; i++) {
      const m = realisticMessage('STEADY', i);
      const response = c.nextResponse();
      c.writeRaw(Buffer.concat([VT, m.subarray(0, 700)]));
      await sleep(150);
      c.writeRaw(Buffer.concat([m.subarray(700), FS_CR]));
      expect(readAck(await response)).toEqual({ code: 'AA', controlId: controlId('STEADY', i) });
    }
    expect(Date.now() - started).toBeGreaterThan(800);
    expect(await storedWith(h, 'STEADY')).toHaveLength(6);
  });
});

describe('idle_timeout_secs', () => {
  it('closes an idle connection and keeps an active one', async () => {
    h = await startSource({ source: { idle_timeout_secs: 0.3 } });
    const idle = await h.raw();
    const started = Date.now();
    const idleClosed = closedPromise(idle).then(() => Date.now() - started);
    const active = await h.client();
    // A frame every 100 ms, not waiting for ACKs: the connection is busy whatever commits cost.
    const acks: Promise<Buffer>[] = [];
    for (let i = 0; i < 8; i++) {
      acks.push(active.send(realisticMessage('ACTIVE', i)));
      await sleep(100);
    }
    expect((await Promise.all(acks)).map((a) => readAck(a).code)).toEqual(Array(8).fill('AA'));
    const idleMs = await idleClosed;
    expect(idleMs).toBeGreaterThanOrEqual(250);
    expect(idleMs).toBeLessThan(3000);
    // Still open after more than twice the idle timeout, because it kept talking.
    expect(Date.now() - started).toBeGreaterThan(700);
    expect(active.raw.destroyed || active.raw.readableEnded).toBe(false);
    expect(readAck(await active.send(realisticMessage('ACTIVE', 99))).code).toBe('AA');
  });
});

describe('allow_ips', () => {
  it('refuses 127.0.0.1 when only 10.0.0.0/8 is allowed', async () => {
    h = await startSource({ source: { allow_ips: ['10.0.0.0/8'] } });
    const s = await h.raw();
    s.on('error', () => {});
    s.write(frame(realisticMessage('DENIED', 1)));
    expect(await closesWithin(s, 3000)).toBe(true);
    expect(await refusedCount(h.metrics, 'not_allowed')).toBe(1);
    expect(await h.stored()).toHaveLength(0);
  });

  it('accepts 127.0.0.1 when it is listed', async () => {
    h = await startSource({ source: { allow_ips: ['10.0.0.0/8', '127.0.0.1'] } });
    const c = await h.client();
    expect(readAck(await c.send(realisticMessage('ALLOWED', 1))).code).toBe('AA');
    expect(await storedWith(h, 'ALLOWED')).toHaveLength(1);
    expect(await refusedCount(h.metrics, 'not_allowed')).toBe(0);
  });
});

describe('one bad sender never delays the others', () => {
  it('serves another connection promptly while one trickles a frame a byte at a time', async () => {
    h = await startSource();
    const trickler = await h.client();
    const m = realisticMessage('TRICKLE', 1);
    const bytes = frame(m);
    const response = trickler.nextResponse();
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < bytes.length) trickler.writeRaw(bytes.subarray(sent, ++sent));
    }, 5);
    try {
      const other = await h.client();
      const r = await sendSequentially(other, 'NEXTTO', 100);
      expect(r.codes.every((c) => c === 'AA')).toBe(true);
      expect(r.ms).toBeLessThan(5000);
      // The trickle was still going on the whole time.
      expect(sent).toBeLessThan(bytes.length);
    } finally {
      clearInterval(timer);
    }
    trickler.writeRaw(bytes.subarray(sent));
    expect(readAck(await response)).toEqual({ code: 'AA', controlId: controlId('TRICKLE', 1) });
    expect((await storedWith(h, 'TRICKLE'))[0]!.payload.equals(m)).toBe(true);
    expect(await storedWith(h, 'NEXTTO')).toHaveLength(100);
  });

  it('serves another connection promptly while one sends an oversize frame in slow pieces', async () => {
    h = await startSource({ source: { max_message_bytes: '64KiB' } });
    const slow = await h.client();
    const huge = Buffer.concat([realisticMessage('SLOWBIG', 1), Buffer.from('OBX|1|TX|||' + 'y'.repeat(4 * 1024 * 1024) + '\r')]);
    const bytes = frame(huge);
    const response = slow.nextResponse();
    let sent = 0;
    const timer = setInterval(() => {
      const next = Math.min(bytes.length, sent + 32 * 1024);
      slow.writeRaw(bytes.subarray(sent, next));
      sent = next;
    }, 5);
    try {
      const other = await h.client();
      const r = await sendSequentially(other, 'BESIDEBIG', 100);
      expect(r.codes.every((c) => c === 'AA')).toBe(true);
      expect(r.ms).toBeLessThan(5000);
      // The slow frame was still arriving the whole time.
      expect(sent).toBeLessThan(bytes.length);
    } finally {
      await waitFor(() => sent === bytes.length, 10_000, 'slow sender finished');
      clearInterval(timer);
    }
    expect(readAck(await response)).toEqual({ code: 'AR', controlId: controlId('SLOWBIG', 1), errorCode: '104' });
    expect(await storedWith(h, 'SLOWBIG')).toHaveLength(0);
    expect(await storedWith(h, 'BESIDEBIG')).toHaveLength(100);
  });

  it('pauses a sender that never reads its ACKs (backpressure reaches it) while another is served promptly', async () => {
    h = await startSource();
    const harness = h;
    const hog: Socket = await h.raw();
    hog.on('error', () => {});
    // Never read: the ACKs pile up in the kernel until the server's writes block.
    hog.pause();
    let hogSent = 0;
    const target = 48 * 1024 * 1024;
    let hogBytes = 0;
    while (hogBytes < target) {
      const batch: Buffer[] = [];
      for (let i = 0; i < 100; i++) batch.push(frame(hogMessage(hogSent++)));
      const chunk = Buffer.concat(batch);
      hog.write(chunk);
      hogBytes += chunk.length;
      // Let the event loop run so the server reads what the kernel passes on.
      await new Promise((r) => setImmediate(r));
    }
    const hogAcked = (): number => harness.source.stats.messagesAcked;

    // The server stops taking the hog's frames: its count stops moving while most bytes wait client-side.
    let last = -1;
    await waitFor(
      async () => {
        const now = hogAcked();
        const stable = now === last;
        last = now;
        if (!stable) await sleep(750);
        return stable;
      },
      20_000,
      'server stopped reading the hog',
    );
    const taken = hogAcked();
    expect(taken).toBeGreaterThan(0);
    expect(taken).toBeLessThan(hogSent / 2);
    expect(hog.writableLength).toBeGreaterThan(target / 2);
    await sleep(500);
    expect(hogAcked()).toBe(taken);

    // Another sender is served promptly the whole time.
    const other = await h.client();
    const r = await sendSequentially(other, 'POLITE', 100);
    expect(r.codes.every((c) => c === 'AA')).toBe(true);
    expect(r.ms).toBeLessThan(5000);
    expect(await storedWith(h, 'POLITE')).toHaveLength(100);
    // And the hog is still held back: it got nothing more in.
    expect(hogAcked() - 100).toBe(taken);
    expect(hog.writableLength).toBeGreaterThan(target / 2);

    // When the hog finally reads, every frame it sent is answered AA in order and stored.
    let expected = 0;
    let bad = 0;
    let rest = Buffer.alloc(0);
    const allAnswered = new Promise<void>((resolve) => {
      hog.on('data', (chunk: Buffer) => {
        rest = Buffer.concat([rest, chunk]);
        for (;;) {
          const end = rest.indexOf(FS_CR);
          if (end < 0) break;
          const ack = readAck(rest.subarray(1, end));
          if (ack.code !== 'AA' || ack.controlId !== controlId('HOG', expected)) bad++;
          expected++;
          rest = rest.subarray(end + 2);
        }
        if (expected === hogSent) resolve();
      });
    });
    hog.resume();
    await allAnswered;
    expect(bad).toBe(0);
    expect(await storedWith(h, 'HOG')).toHaveLength(hogSent);
  });
});
