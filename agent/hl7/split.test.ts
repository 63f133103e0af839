import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseHeader } from './header.js';
import { isSingleMessage, splitMessages, type SplitResult } from './split.js';

function b(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

function slices(bytes: Buffer, result: SplitResult): string[] {
  return result.messages.map((m) => bytes.subarray(m.start, m.end).toString('latin1'));
}

const M1 = 'MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ID1|P|2.5';
const M2 = 'MSH|^~\\&|A|B|C|D|20240101||ORU^R01|ID2|P|2.5';

describe('splitMessages', () => {
  it.each([
    ['CR', '\r'],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('one message with %s terminators is one span covering every byte', (_n, t) => {
    const bytes = b(`${M1}${t}EVN|A01${t}PID|1${t}`);
    const r = splitMessages(bytes);
    expect(r.messages).toEqual([{ start: 0, end: bytes.length }]);
    expect(r.batch).toBe(false);
    expect(r.strayOffset).toBeUndefined();
  });

  it('a last segment without terminator ends the span at the end of input', () => {
    const bytes = b(`${M1}\rPID|1`);
    expect(splitMessages(bytes).messages).toEqual([{ start: 0, end: bytes.length }]);
  });

  it('a message that is only an MSH with no terminator at all', () => {
    const bytes = b(M1);
    expect(splitMessages(bytes).messages).toEqual([{ start: 0, end: bytes.length }]);
  });

  it('several messages: spans are exact slices, terminators kept, blank lines between excluded', () => {
    const bytes = b(`${M1}\r\nPID|1\r\n\r\n${M2}\r\nOBX|1\r\n`);
    const r = splitMessages(bytes);
    expect(slices(bytes, r)).toEqual([`${M1}\r\nPID|1\r\n`, `${M2}\r\nOBX|1\r\n`]);
    expect(r.batch).toBe(false);
  });

  it('messages separated by empty CR segments (\\r\\r) and mixed terminators', () => {
    const bytes = b(`${M1}\rPID|1\r\r${M2}\nOBX|1\n\n\n`);
    expect(slices(bytes, splitMessages(bytes))).toEqual([`${M1}\rPID|1\r`, `${M2}\nOBX|1\n`]);
  });

  it('FHS/BHS/BTS/FTS segments belong to no message and mark the block as a batch', () => {
    const bytes = b(`FHS|^~\\&|F\rBHS|^~\\&|B\r${M1}\rPID|1\r${M2}\rOBX|1\rBTS|2\rBHS|^~\\&|B2\r${M1}\rBTS|1\rFTS|2\r`);
    const r = splitMessages(bytes);
    expect(slices(bytes, r)).toEqual([`${M1}\rPID|1\r`, `${M2}\rOBX|1\r`, `${M1}\r`]);
    expect(r.batch).toBe(true);
    expect(r.strayOffset).toBeUndefined();
  });

  it('a leading BOM stays with the first message (bytes are stored as received)', () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b(`${M1}\nPID|1\n${M1}\n`)]);
    const spans = splitMessages(bytes).messages;
    expect(spans[0]).toEqual({ start: 0, end: 3 + M1.length + 7 });
    expect(spans.length).toBe(2);
    // Not when something else stands between the BOM and the first MSH.
    const blank = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b(`\n${M1}\n`)]);
    expect(splitMessages(blank).messages).toEqual([{ start: 4, end: blank.length }]);
  });

  it('content before the first MSH is reported as stray, with its offset', () => {
    const bytes = b(`\r\nPID|1\r${M1}\r`);
    const r = splitMessages(bytes);
    expect(r.strayOffset).toBe(2);
    expect(slices(bytes, r)).toEqual([`${M1}\r`]);
  });

  it('no MSH at all → no messages', () => {
    expect(splitMessages(b('PID|1\rOBX|2\r')).messages).toEqual([]);
    expect(splitMessages(b('')).messages).toEqual([]);
    expect(splitMessages(b('\r\n \t\r')).messages).toEqual([]);
  });

  it('a segment named MSHX or a line MSH without separator does not start a message', () => {
    const bytes = b(`${M1}\rMSHX|1\rMSH\rPID|1\r`);
    const r = splitMessages(bytes);
    expect(r.messages).toEqual([{ start: 0, end: bytes.length }]);
  });

  it('custom field separator ^ starts messages too', () => {
    const c = 'MSH^~|\\&^S^F^R^F^20240101^^ADT~A24^ID9^T^2.4';
    const bytes = b(`${c}\r\nEVN^A24\r\n${c}\r\n`);
    expect(slices(bytes, splitMessages(bytes))).toEqual([`${c}\r\nEVN^A24\r\n`, `${c}\r\n`]);
  });

  it('property: any messages joined with any terminators and blank lines split back exactly', () => {
    const segment = fc.stringMatching(/^[A-Z][A-Z0-9]{2}\|[ -~]{0,20}$/).filter((s) => !/^(MSH|FHS|BHS|BTS|FTS)/.test(s));
    const terminator = fc.constantFrom('\r', '\n', '\r\n');
    const message = fc.record({
      id: fc.stringMatching(/^[A-Za-z0-9]{1,12}$/),
      segments: fc.array(fc.tuple(segment, terminator), { maxLength: 5 }),
      mshTerminator: terminator,
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(message, fc.array(terminator, { maxLength: 3 })), { minLength: 1, maxLength: 6 }), fc.boolean(), (msgs, batch) => {
        let text = batch ? 'FHS|^~\\&\rBHS|^~\\&\r' : '';
        const expected: string[] = [];
        for (const [m, blanks] of msgs) {
          const body = `MSH|^~\\&|A|B|C|D|T||ADT^A01|${m.id}|P|2.5${m.mshTerminator}` + m.segments.map(([s, t]) => s + t).join('');
          expected.push(body);
          // "\r" then "\n" would be one CRLF terminator, not a blank line: keep the blank line a blank line.
          const gap = blanks.join('');
          text += body + (body.endsWith('\r') && gap.startsWith('\n') ? `\r${gap}` : gap);
        }
        if (batch) text += 'BTS|1\rFTS|1\r';
        const bytes = b(text);
        const r = splitMessages(bytes);
        expect(slices(bytes, r)).toEqual(expected);
        expect(r.batch).toBe(batch);
        for (const s of slices(bytes, r)) expect(parseHeader(b(s)).ok).toBe(true);
      }),
    );
  });
});

describe('isSingleMessage', () => {
  it('true for one message (CR, LF, CRLF, BOM)', () => {
    expect(isSingleMessage(b(`${M1}\rPID|1\r`))).toBe(true);
    expect(isSingleMessage(b(`${M1}\nPID|1\n`))).toBe(true);
    expect(isSingleMessage(b(`${M1}\r\nPID|1\r\n`))).toBe(true);
    expect(isSingleMessage(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b(`${M1}\r`)]))).toBe(true);
  });

  it('false for two messages, batches, a non-MSH start or leading blank lines', () => {
    expect(isSingleMessage(b(`${M1}\r${M2}\r`))).toBe(false);
    expect(isSingleMessage(b(`${M1}\n${M2}\n`))).toBe(false);
    expect(isSingleMessage(b(`FHS|^~\\&\r${M1}\rFTS|1\r`))).toBe(false);
    expect(isSingleMessage(b(`${M1}\rBTS|1\r`))).toBe(false);
    expect(isSingleMessage(b(`${M1}\nFTS|1`))).toBe(false);
    expect(isSingleMessage(b(`PID|1\r${M1}\r`))).toBe(false);
    expect(isSingleMessage(b(`\r${M1}\r`))).toBe(false);
    expect(isSingleMessage(b(''))).toBe(false);
  });
});
