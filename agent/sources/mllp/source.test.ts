// The mllp source end to end over real sockets, on the real buffer: framing, the corpus byte for
// byte, duplicates, a full buffer and a graceful stop. Limits: source-limits.test.ts; TLS:
// source-tls.test.ts; logs: source-logs.test.ts.

import { afterEach, describe, expect, it } from 'vitest';
import type { AppendResult, IncomingMessage } from '../../buffer/index.js';
import { realisticMessage } from '../../../test/helpers/messages.js';
import { controlId, startSource, waitFor, type Harness } from '../../../test/helpers/mllp-harness.js';
import { loadManifest, readSample } from '../../../test/helpers/samples.js';
import { readAck } from './client.js';
import { frame } from './decoder.js';

const VT = Buffer.of(0x0b);
const FS_CR = Buffer.of(0x1c, 0x0d);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Rows whose control id starts with prefix, in seq order. */
async function storedWith(harness: Harness, prefix: string) {
  return (await harness.stored()).filter((r) => r.meta.controlId.startsWith(prefix));
}

describe('framing over real sockets', () => {
  it('reassembles a frame written one byte at a time', async () => {
    h = await startSource();
    const c = await h.client();
    const payload = readSample('adt-a31_v2.5.1_dcm4che.hl7');
    const bytes = frame(payload);
    const response = c.nextResponse();
    for (const b of bytes) {
      c.writeRaw(Buffer.of(b));
      await new Promise((r) => setTimeout(r, 0));
    }
    const ack = readAck(await response);
    expect(ack.code).toBe('AA');
    expect(ack.controlId).toBe('100212');
    const rows = await h.stored();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.payload.equals(payload)).toBe(true);
    expect(rows[0]!.meta.controlId).toBe('100212');
  });

  it('answers several frames sent in one write, in order', async () => {
    h = await startSource();
    const c = await h.client();
    const messages = Array.from({ length: 5 }, (_, i) => realisticMessage('ONEW', i));
    const responses = messages.map(() => c.nextResponse());
    c.writeRaw(Buffer.concat(messages.map(frame)));
    const acks = (await Promise.all(responses)).map(readAck);
    expect(acks.map((a) => a.code)).toEqual(['AA', 'AA', 'AA', 'AA', 'AA']);
    expect(acks.map((a) => a.controlId)).toEqual(messages.map((_, i) => controlId('ONEW', i)));
    const rows = await h.stored();
    expect(rows.map((r) => r.payload.toString('latin1'))).toEqual(messages.map((m) => m.toString('latin1')));
  });

  it('answers 50 pipelined frames in order, each MSA-2 matching its frame, stored in order', async () => {
    h = await startSource();
    const c = await h.client();
    const messages = Array.from({ length: 50 }, (_, i) => realisticMessage('PIPE', i));
    // Every frame is written before any response is read.
    const pending = messages.map((m) => c.send(m));
    const acks = (await Promise.all(pending)).map(readAck);
    expect(acks.every((a) => a.code === 'AA')).toBe(true);
    expect(acks.map((a) => a.controlId)).toEqual(messages.map((_, i) => controlId('PIPE', i)));
    const rows = await h.stored();
    expect(rows).toHaveLength(50);
    rows.forEach((r, i) => {
      expect(r.payload.equals(messages[i]!)).toBe(true);
      expect(r.meta.controlId).toBe(controlId('PIPE', i));
      if (i > 0) expect(r.seq).toBeGreaterThan(rows[i - 1]!.seq);
    });
  });

  it('ignores bytes between frames, including a stray FS CR', async () => {
    h = await startSource();
    const c = await h.client();
    const a = realisticMessage('JUNK', 1);
    const b = realisticMessage('JUNK', 2);
    const responses = [c.nextResponse(), c.nextResponse()];
    c.writeRaw(Buffer.concat([Buffer.from('junk before\r\n'), frame(a), Buffer.from('\r\nMSH|^~\\&|NOT|FRAMED\r'), FS_CR, Buffer.from('  '), frame(b), Buffer.from('trailing')]));
    const acks = (await Promise.all(responses)).map(readAck);
    expect(acks).toEqual([
      { code: 'AA', controlId: controlId('JUNK', 1) },
      { code: 'AA', controlId: controlId('JUNK', 2) },
    ]);
    const rows = await h.stored();
    expect(rows).toHaveLength(2);
    expect(rows[0]!.payload.equals(a)).toBe(true);
    expect(rows[1]!.payload.equals(b)).toBe(true);
    // The connection is still in step: a further frame gets its own answer.
    expect(readAck(await c.send(realisticMessage('JUNK', 3))).controlId).toBe(controlId('JUNK', 3));
  });

  it('restarts a frame at a VT inside it; the abandoned part is not stored', async () => {
    h = await startSource();
    const c = await h.client();
    const abandoned = realisticMessage('ABANDON', 1).subarray(0, 400);
    const full = realisticMessage('RESTART', 1);
    const response = c.nextResponse();
    c.writeRaw(Buffer.concat([VT, abandoned, VT, full, FS_CR]));
    const ack = readAck(await response);
    expect(ack).toEqual({ code: 'AA', controlId: controlId('RESTART', 1) });
    const rows = await h.stored();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.payload.equals(full)).toBe(true);
    expect(readAck(await c.send(realisticMessage('RESTART', 2))).controlId).toBe(controlId('RESTART', 2));
    expect(await h.stored()).toHaveLength(2);
  });

  it('stores an inbound ACK without answering it; the next frame gets the next response', async () => {
    h = await startSource();
    const c = await h.client();
    const ackIn = readSample('ack-aa_v2.6_ipf-crlf.hl7');
    const after = realisticMessage('AFTERACK', 1);
    const response = c.nextResponse();
    c.writeRaw(Buffer.concat([frame(ackIn), frame(after)]));
    expect(readAck(await response)).toEqual({ code: 'AA', controlId: controlId('AFTERACK', 1) });
    const rows = await h.stored();
    expect(rows).toHaveLength(2);
    expect(rows[0]!.payload.equals(ackIn)).toBe(true);
    expect(rows[1]!.payload.equals(after)).toBe(true);
  });
});

/** The response a sample is owed, read independently of agent/hl7: AA in original mode; in enhanced mode CA unless MSH-15 says NE, or ER (no error here). */
function expectedCode(payload: Buffer, fieldSeparator: string): 'AA' | 'CA' | null {
  const text = payload.toString('latin1').replace(/^\u00ef\u00bb\u00bf/, '');
  const msh = text.split(/\r\n|\r|\n/)[0]!.split(fieldSeparator);
  // A field holding only spaces counts as empty (adt-a01_v2.3_fhirconv-bom.hl7 has MSH-15 = " ").
  const accept = (msh[14] ?? '').trim();
  const application = (msh[15] ?? '').trim();
  if (accept === '' && application === '') return 'AA';
  const mode = accept.toUpperCase();
  return mode === 'NE' || mode === 'ER' ? null : 'CA';
}

describe('the real corpus', () => {
  it('stores every single-message sample byte for byte and answers each as its MSH-15/16 ask', async () => {
    h = await startSource();
    const c = await h.client();
    const entries = loadManifest().filter((e) => e.messages === 1 && !e.messageType.startsWith('ACK') && !e.file.includes('.batch.'));
    expect(entries.length).toBeGreaterThan(40);
    const payloads = entries.map((e) => readSample(e.file));
    const owed = entries
      .map((e, i) => ({ file: e.file, controlId: e.controlId, code: expectedCode(payloads[i]!, e.fieldSeparator) }))
      .filter((o) => o.code !== null);
    // Both modes are represented, and some samples are owed nothing.
    expect(owed.some((o) => o.code === 'AA') && owed.some((o) => o.code === 'CA')).toBe(true);
    expect(owed.length).toBeLessThan(entries.length);
    const responses = owed.map(() => c.nextResponse());
    // All frames pipelined in one write; responses come back in frame order, none for NE/ER.
    c.writeRaw(Buffer.concat(payloads.map(frame)));
    const acks = (await Promise.all(responses)).map(readAck);
    expect(acks.map((a, i) => ({ file: owed[i]!.file, code: a.code, controlId: a.controlId }))).toEqual(owed);
    const rows = await h.stored();
    expect(rows).toHaveLength(entries.length);
    rows.forEach((r, i) => {
      expect({ file: entries[i]!.file, same: r.payload.equals(payloads[i]!) }).toEqual({ file: entries[i]!.file, same: true });
    });
    // Nothing further is owed: the next frame gets the next response.
    expect(readAck(await c.send(realisticMessage('CORPUSEND', 1))).controlId).toBe(controlId('CORPUSEND', 1));
  });

  it('answers a 124-message frame once and keeps every message (dedupe off), or each distinct one once (dedupe on)', async () => {
    const batch = readSample('mirth-TestADT-124msgs.batch.hl7');
    h = await startSource({ source: { dedupe_window_secs: 0 } });
    expect(readAck(await (await h.client()).send(batch)).code).toBe('AA');
    const rows = await h.stored();
    expect(rows).toHaveLength(124);
    // Every stored message is a slice of the frame, in order.
    let from = 0;
    for (const r of rows) {
      const at = batch.indexOf(r.payload, from);
      expect(at).toBeGreaterThanOrEqual(from);
      from = at + r.payload.length;
    }
    // The file repeats whole messages under the same control ids: with the window on they are resends.
    const distinct = new Set(rows.map((r) => `${r.meta.controlId}:${r.payload.toString('hex')}`)).size;
    expect(distinct).toBeLessThan(124);
    await h.close();
    h = await startSource();
    expect(readAck(await (await h.client()).send(batch)).code).toBe('AA');
    expect(await h.stored()).toHaveLength(distinct);
  });
});

describe('duplicates', () => {
  it('acknowledges identical bytes with the same MSH-10 twice inside the window and stores them once', async () => {
    h = await startSource({ source: { dedupe_window_secs: 300 } });
    const c = await h.client();
    const m = realisticMessage('DUP', 1);
    expect(readAck(await c.send(m))).toEqual({ code: 'AA', controlId: controlId('DUP', 1) });
    expect(readAck(await c.send(m))).toEqual({ code: 'AA', controlId: controlId('DUP', 1) });
    // A resend on another connection is the same sender retrying after a drop.
    const c2 = await h.client();
    expect(readAck(await c2.send(m)).code).toBe('AA');
    const rows = await h.stored();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.payload.equals(m)).toBe(true);
    expect(h.source.stats.duplicates).toBe(2);
    expect((await h.metrics.messagesDuplicate.get()).values[0]?.value).toBe(2);
  });

  it('stores different bytes under a reused MSH-10 as a new message', async () => {
    h = await startSource({ source: { dedupe_window_secs: 300 } });
    const c = await h.client();
    const first = realisticMessage('REUSE', 2);
    const second = realisticMessage('REUSE', 2, { patientName: 'OTHER^PERSON' });
    expect(first.equals(second)).toBe(false);
    expect(readAck(await c.send(first)).code).toBe('AA');
    expect(readAck(await c.send(second)).code).toBe('AA');
    const rows = await h.stored();
    expect(rows).toHaveLength(2);
    expect(rows[0]!.payload.equals(first)).toBe(true);
    expect(rows[1]!.payload.equals(second)).toBe(true);
    expect(h.source.stats.duplicates).toBe(0);
  });

  it('stores every copy with dedupe_window_secs: 0', async () => {
    h = await startSource({ source: { dedupe_window_secs: 0 } });
    const c = await h.client();
    const m = realisticMessage('NODEDUPE', 1);
    expect(readAck(await c.send(m)).code).toBe('AA');
    expect(readAck(await c.send(m)).code).toBe('AA');
    const rows = await h.stored();
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.payload.equals(m))).toBe(true);
  });
});

describe('buffer full', () => {
  it('answers AR with ERR 207 once the buffer is full and stores nothing more', async () => {
    const size = realisticMessage('FULL', 0).length;
    const fits = 5;
    h = await startSource({ maxBytes: size * fits + Math.floor(size / 2) });
    const c = await h.client();
    const acks = [];
    // Even n only: every message is the same ADT, the same size.
    for (let i = 0; i < fits + 3; i++) acks.push(readAck(await c.send(realisticMessage('FULL', i * 2))));
    expect(acks.slice(0, fits).map((a) => a.code)).toEqual(Array(fits).fill('AA'));
    for (const [i, a] of acks.slice(fits).entries()) {
      expect(a).toEqual({ code: 'AR', controlId: controlId('FULL', (fits + i) * 2), errorCode: '207' });
    }
    const rows = await h.stored();
    expect(rows).toHaveLength(fits);
    expect(rows.map((r) => r.meta.controlId)).toEqual(Array.from({ length: fits }, (_, i) => controlId('FULL', i * 2)));
    expect(h.buffer.stats().full).toBe(true);
    const rejected = await h.metrics.framesRejected.get();
    expect(rejected.values.find((v) => v.labels.code === '207')?.value).toBe(3);
  });
});

describe('graceful stop', () => {
  it('answers every frame already read with AA, stores it, closes the connections and refuses new ones', async () => {
    // Commits are held at a gate so the frames are demonstrably in flight when stop() begins.
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let arrived = 0;
    h = await startSource({
      sink: (buffer) => ({
        async append(messages: readonly IncomingMessage[], options: { dedupeWindowSecs: number }): Promise<AppendResult> {
          arrived += messages.length;
          await gate;
          return buffer.append(messages, options);
        },
      }),
    });
    const harness = h;
    const perConnection = 20;
    const clients = await Promise.all([0, 1, 2].map(() => harness.client()));
    const sent = clients.map((_, k) => Array.from({ length: perConnection }, (_, i) => realisticMessage(`STOP${k}X`, i)));
    const responses = clients.map((c, k) => sent[k]!.map((m) => c.send(m)));
    await waitFor(() => arrived === 3 * perConnection, 5000, 'every frame read and handed to the sink');

    const started = Date.now();
    const stopping = h.source.stop(Date.now() + 10_000);
    expect(h.source.health().state).toBe('stopping');
    // The listener is closed as soon as the stop begins: a new connection is refused.
    await expect(h.raw()).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    open();
    for (let k = 0; k < clients.length; k++) {
      const acks = (await Promise.all(responses[k]!)).map(readAck);
      expect(acks.map((a) => a.code)).toEqual(Array(perConnection).fill('AA'));
      expect(acks.map((a) => a.controlId)).toEqual(sent[k]!.map((_, i) => controlId(`STOP${k}X`, i)));
    }
    // Every connection is closed by the server once its frames are answered.
    await Promise.all(clients.map((c) => new Promise<void>((resolve) => (c.raw.closed ? resolve() : c.raw.once('close', () => resolve())))));
    await stopping;
    // Long before the 10 s deadline: the drain finished, nothing was cut off hard.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(h.source.health().state).toBe('stopped');
    for (let k = 0; k < clients.length; k++) {
      const rows = await storedWith(h, `STOP${k}X`);
      expect(rows.map((r) => r.payload.toString('latin1'))).toEqual(sent[k]!.map((m) => m.toString('latin1')));
    }
  });

  it('closes connections hard at the deadline when commits hang; those commits still finish', async () => {
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let arrived = 0;
    h = await startSource({
      sink: (buffer) => ({
        async append(messages: readonly IncomingMessage[], options: { dedupeWindowSecs: number }): Promise<AppendResult> {
          arrived += messages.length;
          await gate;
          return buffer.append(messages, options);
        },
      }),
    });
    const c = await h.client();
    const sent = Array.from({ length: 5 }, (_, i) => realisticMessage('HARD', i));
    const outcomes = sent.map((m) => c.send(m).then(() => 'answered', () => 'cut off'));
    await waitFor(() => arrived === 5, 5000, 'frames read');
    const started = Date.now();
    await h.source.stop(Date.now() + 400);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(350);
    expect(took).toBeLessThan(3000);
    expect(await Promise.all(outcomes)).toEqual(Array(5).fill('cut off'));
    open();
    // The sender got no ACK, so it will resend; the commits themselves were not abandoned.
    await waitFor(async () => (await storedWith(h!, 'HARD')).length === 5, 5000, 'held commits finished');
  });

  it('stops promptly with idle connections open', async () => {
    h = await startSource();
    const clients = [await h.client(), await h.client()];
    expect(readAck(await clients[0]!.send(realisticMessage('IDLE', 1))).code).toBe('AA');
    const started = Date.now();
    await h.source.stop(Date.now() + 10_000);
    expect(Date.now() - started).toBeLessThan(2000);
    for (const c of clients) expect(c.raw.closed || c.raw.readableEnded).toBe(true);
  });
});
