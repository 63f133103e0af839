// No message content in the mllp source's logs, even at trace level and on every refusal path:
// patient names carry a canary that must never appear in a log line.

import { afterEach, describe, expect, it } from 'vitest';
import { realisticMessage } from '../../../test/helpers/messages.js';
import { closedPromise, controlId, startSource, waitFor, type Harness } from '../../../test/helpers/mllp-harness.js';
import { readAck } from './client.js';

const CANARY = 'CANARYZX^QUOKKA';
const VT = Buffer.of(0x0b);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const canary = (prefix: string, n: number): Buffer => realisticMessage(prefix, n, { patientName: CANARY });

describe('logs carry no message content', () => {
  it('never writes the canary, whether a frame is accepted, a duplicate, or refused', async () => {
    const size = canary('LOG', 0).length;
    // Room for three of these ADTs (even n): the fourth finds the buffer full.
    h = await startSource({
      logLevel: 'trace',
      maxBytes: size * 3 + (size >> 1),
      source: { max_message_bytes: '4KiB', partial_frame_timeout_secs: 0.3 },
    });
    const c = await h.client();

    // Accepted, then resent (duplicate inside the window).
    expect(readAck(await c.send(canary('LOG', 0))).code).toBe('AA');
    expect(readAck(await c.send(canary('LOG', 0))).code).toBe('AA');
    expect(readAck(await c.send(canary('LOG', 2))).code).toBe('AA');

    // Missing MSH-10.
    const noId = Buffer.from(canary('LOG', 4).toString('latin1').replace(`|${controlId('LOG', 4)}|`, '||'), 'latin1');
    expect(noId.includes(CANARY)).toBe(true);
    const noIdAck = readAck(await c.send(noId));
    expect(['AR', 'AE']).toContain(noIdAck.code);
    expect(noIdAck.errorCode).toBe('101');

    // Oversize: the canary is in the head the decoder keeps to address the rejection.
    const big = Buffer.concat([canary('LOG', 6), Buffer.from(`NTE|1||${CANARY.repeat(400)}\r`)]);
    expect(readAck(await c.send(big))).toEqual({ code: 'AR', controlId: controlId('LOG', 6), errorCode: '104' });

    // No MSH at all.
    const noMsh = Buffer.from(`PID|1||123||${CANARY}\r`);
    expect(readAck(await c.send(noMsh)).code).toBe('AR');

    // Junk between frames, and a restarted frame.
    c.writeRaw(Buffer.concat([Buffer.from(`stray ${CANARY}\r`), VT, canary('LOG', 99).subarray(0, 300)]));
    expect(readAck(await c.send(canary('LOG', 8))).code).toBe('AA');

    // Buffer full.
    const fullAck = readAck(await c.send(canary('LOG', 10)));
    expect(fullAck).toEqual({ code: 'AR', controlId: controlId('LOG', 10), errorCode: '207' });
    expect(h.buffer.stats().full).toBe(true);

    // A half frame left past its deadline.
    const partial = await h.raw();
    const partialClosed = closedPromise(partial);
    partial.write(Buffer.concat([VT, canary('LOG', 12).subarray(0, 600)]));
    await partialClosed;

    // The stored rows do hold the canary: it is in the data, just never in the logs.
    const rows = await h.stored();
    expect(rows.map((r) => r.meta.controlId)).toEqual([controlId('LOG', 0), controlId('LOG', 2), controlId('LOG', 8)]);
    expect(rows.every((r) => r.payload.includes(CANARY))).toBe(true);

    await h.source.stop(Date.now() + 5000);
    const logs = h.logs;
    await waitFor(() => logs.some((l) => l.includes('MLLP listener stopped')), 2000, 'stop logged');
    // The logs were written and do describe these frames (so the check below has something to check).
    const entries = logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const refusedCodes = entries.filter((e) => e.msg === 'frame refused').map((e) => e.code);
    expect(refusedCodes).toEqual(expect.arrayContaining([101, 104, 207]));
    expect(entries.some((e) => e.msg === 'frame committed' && e.control_id === controlId('LOG', 0))).toBe(true);
    expect(entries.some((e) => typeof e.msg === 'string' && e.msg.includes('partial_frame_timeout'))).toBe(true);
    expect(entries.some((e) => typeof e.msg === 'string' && e.msg.includes('dedupe window'))).toBe(true);

    const leaks = logs.filter((l) => l.includes('CANARYZX') || l.includes('QUOKKA'));
    expect(leaks).toEqual([]);
  });
});
