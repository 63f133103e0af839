import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Keyring, MessageBuffer, type AppendResult, type IncomingMessage } from '../../buffer/index.js';
import { parseHeader, splitMessages, type MessageHeader } from '../../hl7/index.js';
import { loadManifest, readSample } from '../../../test/helpers/samples.js';
import { OVERSIZE_HEAD_BYTES, type Frame } from './decoder.js';
import { FrameHandler, hashPrefix, type FrameHandlerEvents, type FrameSink } from './frame-handler.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const CLOCK = 1_717_000_000_000;

type Reply = (messages: readonly IncomingMessage[]) => Promise<AppendResult>;

class FakeSink implements FrameSink {
  readonly calls: { messages: IncomingMessage[]; options: { dedupeWindowSecs: number } }[] = [];
  private seq = 0;
  reply: Reply = (messages) => Promise.resolve({ status: 'committed', outcomes: messages.map(() => ({ status: 'stored' as const, seq: ++this.seq })) });

  append(messages: readonly IncomingMessage[], options: { dedupeWindowSecs: number }): Promise<AppendResult> {
    this.calls.push({ messages: [...messages], options });
    return this.reply(messages);
  }

  get stored(): IncomingMessage[] {
    return this.calls.flatMap((c) => c.messages);
  }
}

class Recorder implements FrameHandlerEvents {
  readonly acceptedInfo: Parameters<FrameHandlerEvents['accepted']>[0][] = [];
  readonly refusedInfo: Parameters<FrameHandlerEvents['refused']>[0][] = [];
  readonly responses: (string | null)[] = [];
  accepted(info: Parameters<FrameHandlerEvents['accepted']>[0]): void {
    this.acceptedInfo.push(info);
  }
  refused(info: Parameters<FrameHandlerEvents['refused']>[0]): void {
    this.refusedInfo.push(info);
  }
  responded(code: string | null): void {
    this.responses.push(code);
  }
}

function setup(options: { draining?: () => boolean; sink?: FrameSink; dedupeWindowSecs?: number; clock?: () => number } = {}): { handler: FrameHandler; sink: FakeSink; events: Recorder } {
  const sink = new FakeSink();
  const events = new Recorder();
  const handler = new FrameHandler({
    sourceId: 'src-1',
    dedupeWindowSecs: options.dedupeWindowSecs ?? 300,
    sink: options.sink ?? sink,
    events,
    clock: options.clock ?? (() => CLOCK),
    ...(options.draining ? { draining: options.draining } : {}),
  });
  return { handler, sink, events };
}

const asFrame = (payload: Buffer): Frame => ({ kind: 'frame', payload });

interface ParsedAck {
  readonly bytes: Buffer;
  readonly header: MessageHeader;
  readonly code: string;
  /** MSA-2 as raw bytes. */
  readonly msa2: Buffer;
  readonly err: string[] | undefined;
  readonly segments: string[];
}

/** Parses a response back; fails when it is not exactly one well-formed ACK message. */
function ack(response: Buffer | null): ParsedAck {
  if (!response) throw new Error('expected a response, got none');
  const r = parseHeader(response);
  if (!r.ok) throw new Error(`response does not parse: ${r.problem.reason}`);
  const h = r.header;
  const text = response.toString('latin1');
  expect(text.endsWith('\r')).toBe(true);
  expect(text.includes('\n')).toBe(false);
  const segments = text.slice(0, -1).split('\r');
  expect(segments.filter((s) => s.startsWith('MSH')).length).toBe(1); // one response message
  expect(h.messageType).toBe('ACK');
  const msa = segments[1]?.split(h.delimiters.field) ?? [];
  expect(msa[0]).toBe('MSA');
  expect(msa.length).toBe(3);
  const errSeg = segments.find((s) => s.startsWith(`ERR${h.delimiters.field}`));
  expect(segments.length).toBe(errSeg ? 3 : 2);
  return { bytes: response, header: h, code: msa[1] ?? '', msa2: Buffer.from(msa[2] ?? '', 'latin1'), err: errSeg?.split(h.delimiters.field), segments };
}

/** The ERR's 0357 code, whichever layout (v2.5+ ERR-3, or ≤2.4 ERR-1 ELD) the ACK uses. */
function errCode(a: ParsedAck): number {
  if (!a.err) throw new Error('no ERR');
  const d = a.header.delimiters;
  const v25 = a.err[3];
  if (v25 !== undefined && v25 !== '') return Number(v25.split(d.component)[0]);
  const eld = (a.err[1] ?? '').split(d.component);
  return Number((eld[3] ?? '').split(d.subcomponent)[0]);
}

function msh(opts: { id?: string; type?: string; version?: string; m15?: string; m16?: string; f?: string } = {}): string {
  const f = opts.f ?? '|';
  const fields = ['MSH', '^~\\&', 'SAPP', 'SFAC', 'RAPP', 'RFAC', '20240101120000', '', opts.type ?? 'ADT^A01^ADT_A01', opts.id ?? 'MSG-1', 'P', opts.version ?? '2.5.1'];
  if (opts.m15 !== undefined || opts.m16 !== undefined) fields.push('', '', opts.m15 ?? '', opts.m16 ?? '');
  return fields.join(f);
}

function message(opts: Parameters<typeof msh>[0] = {}, t = '\r'): Buffer {
  return b(`${msh(opts)}${t}EVN|A01|20240101${t}PID|1||12345^^^H^MR||DOE^JANE${t}`);
}

describe('FrameHandler: original mode', () => {
  it('one message: stored byte for byte with its metadata, then AA addressed back to the sender', async () => {
    const { handler, sink, events } = setup();
    const payload = message({ id: 'CTRL-1' });
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('CTRL-1');
    expect(a.err).toBeUndefined();
    expect(a.header.sendingApplication).toBe('RAPP');
    expect(a.header.sendingFacility).toBe('RFAC');
    expect(a.header.receivingApplication).toBe('SAPP');
    expect(a.header.receivingFacility).toBe('SFAC');
    expect(a.header.versionField).toBe('2.5.1');
    expect(sink.calls.length).toBe(1);
    expect(sink.calls[0]?.options).toEqual({ dedupeWindowSecs: 300 });
    expect(sink.stored.length).toBe(1);
    const m = sink.stored[0]!;
    expect(m.payload.equals(payload)).toBe(true);
    expect(m.sourceId).toBe('src-1');
    expect(m.receivedAt).toBe(CLOCK);
    expect(m.meta).toEqual({ messageType: 'ADT', triggerEvent: 'A01', controlId: 'CTRL-1', sendingApplication: 'SAPP', sendingFacility: 'SFAC', version: '2.5.1' });
    expect(events.acceptedInfo.length).toBe(1);
    expect(events.acceptedInfo[0]?.messages).toBe(1);
    expect(events.acceptedInfo[0]?.bytes).toBe(payload.length);
    expect(events.acceptedInfo[0]?.duplicates).toBe(0);
    expect(events.refusedInfo.length).toBe(0);
    expect(events.responses).toEqual(['AA']);
  });

  it("each ACK gets its own short ASCII MSH-10, never the inbound one", async () => {
    const { handler } = setup();
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const a = ack(await handler.handle(asFrame(message({ id: 'SAME' }))));
      expect(a.header.controlId).toMatch(/^[A-Za-z0-9]{1,20}$/);
      expect(a.header.controlId).not.toBe('SAME');
      ids.add(a.header.controlId);
    }
    expect(ids.size).toBe(50);
  });

  it('answers only after the commit has completed', async () => {
    const { handler, sink } = setup();
    let commit: (r: AppendResult) => void = () => {};
    sink.reply = () => new Promise((resolve) => (commit = resolve));
    let response: Buffer | null | undefined;
    const pending = handler.handle(asFrame(message())).then((r) => (response = r));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(sink.calls.length).toBe(1);
    expect(response).toBeUndefined();
    commit({ status: 'committed', outcomes: [{ status: 'stored', seq: 1 }] });
    await pending;
    expect(ack(response ?? null).code).toBe('AA');
  });

  it('stores LF and CRLF messages exactly as received and answers with CR-terminated ACKs', async () => {
    for (const t of ['\n', '\r\n']) {
      const { handler, sink } = setup();
      const payload = message({ id: `T${t.length}` }, t);
      const a = ack(await handler.handle(asFrame(payload)));
      expect(a.code).toBe('AA');
      expect(a.msa2.toString('latin1')).toBe(`T${t.length}`);
      expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
    }
  });

  it('a message with a BOM is stored with its BOM', async () => {
    const { handler, sink } = setup();
    const payload = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), message({ id: 'BOM1' }, '\n')]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('BOM1');
    expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
  });

  it('MSA-2 echoes a non-ASCII MSH-10 byte for byte', async () => {
    const { handler } = setup();
    const raw = Buffer.from([0x4b, 0xc4, 0xe2, 0x80, 0x93, 0xff]);
    const payload = Buffer.concat([b('MSH|^~\\&|A|B|C|D|T||ORU^R01|'), raw, b('|P|2.5\rOBX|1\r')]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.msa2.equals(raw)).toBe(true);
  });

  it('a whitespace-only MSH-15 (real sample) is original mode: AA, not CA', async () => {
    const { handler, sink } = setup();
    const payload = readSample('adt-a01_v2.3_fhirconv-bom.hl7');
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('599102');
    expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
  });
});

describe('FrameHandler: enhanced mode (accept acknowledgement)', () => {
  it.each([
    ['AL', '', 'CA'],
    ['AL', 'NE', 'CA'],
    ['SU', '', 'CA'],
    ['', 'AL', 'CA'], // empty MSH-15 with MSH-16 valued counts as AL
    ['ER', '', null],
    ['NE', 'AL', null],
  ])('MSH-15=%j MSH-16=%j, committed → %s; the message is stored either way', async (m15, m16, expected) => {
    const { handler, sink, events } = setup();
    const payload = message({ id: 'E1', m15, m16 });
    const response = await handler.handle(asFrame(payload));
    if (expected === null) expect(response).toBeNull();
    else {
      const a = ack(response);
      expect(a.code).toBe(expected);
      expect(a.msa2.toString('latin1')).toBe('E1');
      expect(a.err).toBeUndefined();
    }
    expect(sink.stored.length).toBe(1);
    expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
    expect(events.responses).toEqual([expected]);
  });

  it.each([
    ['AL', 'CR'],
    ['ER', 'CR'],
    ['', 'CR'],
    ['SU', null],
    ['NE', null],
  ])('MSH-15=%j, buffer full → %s', async (m15, expected) => {
    const { handler, sink } = setup();
    sink.reply = () => Promise.resolve({ status: 'full' });
    const response = await handler.handle(asFrame(message({ id: 'F1', m15, m16: 'AL' })));
    if (expected === null) expect(response).toBeNull();
    else {
      const a = ack(response);
      expect(a.code).toBe(expected);
      expect(errCode(a)).toBe(207);
    }
  });

  it('empty MSH-10 in enhanced mode → CE with ERR 101, nothing stored', async () => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(message({ id: '', m15: 'AL', m16: 'NE' }))));
    expect(a.code).toBe('CE');
    expect(a.msa2.length).toBe(0);
    expect(errCode(a)).toBe(101);
    expect(sink.calls.length).toBe(0);
  });

  it('the custom-separator sample (field ^, MSH-15 AL) gets CA in its own delimiters', async () => {
    const { handler, sink } = setup();
    const payload = readSample('adt-a24_v2.4_hapi-custom-separators.hl7');
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('CA');
    expect(a.header.delimiters.field).toBe('^');
    expect(a.header.delimiters.encodingCharacters).toBe('~|\\&');
    expect(a.bytes.toString('latin1').startsWith('MSH^~|\\&^RECEIVING^200^SENDING^200M^')).toBe(true);
    expect(a.segments[1]).toBe('MSA^CA^2003582144');
    expect(a.header.messageTypeField).toBe('ACK~A24~ACK');
    expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
  });
});

describe('FrameHandler: acknowledgements are never acknowledged', () => {
  it('an inbound ACK is stored and gets no response', async () => {
    for (const file of ['ack-aa_v2.6_ipf-crlf.hl7', 'ack-ar_v2.5_ipf-err-escapes.hl7', 'ack-ae_v2.5_ipf-pcd01-invalid.hl7', 'ack_v2.1_hapi-custom-subcomp.hl7']) {
      const { handler, sink, events } = setup();
      const payload = readSample(file);
      expect(await handler.handle(asFrame(payload))).toBeNull();
      expect(sink.stored.length).toBe(1);
      expect(sink.stored[0]?.payload.equals(payload)).toBe(true);
      expect(sink.stored[0]?.meta.messageType).toBe('ACK');
      expect(events.acceptedInfo.length).toBe(1);
      expect(events.responses).toEqual([null]);
    }
  });

  it('an inbound ACK is not answered even when it cannot be stored', async () => {
    const { handler, sink } = setup();
    sink.reply = () => Promise.resolve({ status: 'full' });
    expect(await handler.handle(asFrame(b('MSH|^~\\&|A|B|C|D|T||ACK|A1|P|2.5\rMSA|AA|X\r')))).toBeNull();
    const oversize = await handler.handle({ kind: 'oversize', head: b('MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|A2|P|2.5\rMSA|AA|'), size: 99_999_999 });
    expect(oversize).toBeNull();
  });

  it('an ACK and a message in one frame: both stored, the response answers the message', async () => {
    const { handler, sink } = setup();
    const ackMsg = b('MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|ACK-9|P|2.5\rMSA|AA|X\r');
    const adt = message({ id: 'ADT-9' });
    const a = ack(await handler.handle(asFrame(Buffer.concat([ackMsg, adt]))));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('ADT-9');
    expect(sink.stored.map((m) => m.payload.toString('latin1'))).toEqual([ackMsg.toString('latin1'), adt.toString('latin1')]);
  });
});

describe('FrameHandler: refusals', () => {
  it('oversize frame → AR with ERR 104 addressed from its head, nothing stored', async () => {
    const { handler, sink, events } = setup();
    const head = b(`${msh({ id: 'BIG-1' })}\rOBX|1|ED|PDF||^application^pdf^Base64^JVBERi0xLjQK`);
    const a = ack(await handler.handle({ kind: 'oversize', head, size: 20_000_000 }));
    expect(a.code).toBe('AR');
    expect(a.msa2.toString('latin1')).toBe('BIG-1');
    expect(errCode(a)).toBe(104);
    expect(a.err?.[3]).toBe('104^Value too long^HL70357');
    expect(a.err?.[8]).toBe('message of 20000000 bytes exceeds max_message_bytes');
    expect(sink.calls.length).toBe(0);
    expect(events.refusedInfo.map((r) => [r.code, r.bytes])).toEqual([[104, 20_000_000]]);
    expect(events.refusedInfo[0]?.hashPrefix).toBe(hashPrefix(head));
    expect(events.refusedInfo[0]?.hashPrefix).toMatch(/^[0-9a-f]{12}$/);
  });

  it('oversize frame in enhanced mode → CR; with a v2.4 header the ERR uses the ELD layout', async () => {
    const { handler } = setup();
    const a = ack(await handler.handle({ kind: 'oversize', head: b(msh({ id: 'B2', version: '2.4', m15: 'ER' })), size: OVERSIZE_HEAD_BYTES * 10 }));
    expect(a.code).toBe('CR');
    expect(a.err?.[1]).toBe(`^^^104&message of ${OVERSIZE_HEAD_BYTES * 10} bytes exceeds max_message_bytes&HL70357`);
    expect(errCode(a)).toBe(104);
  });

  it('oversize frame whose head has no MSH → AR 104 with default delimiters and empty MSA-2', async () => {
    const { handler } = setup();
    const a = ack(await handler.handle({ kind: 'oversize', head: b('garbage'), size: 123_456_789 }));
    expect(a.code).toBe('AR');
    expect(a.msa2.length).toBe(0);
    expect(errCode(a)).toBe(104);
  });

  it.each([
    ['full', { status: 'full' } as const, 'agent buffer is full; resend later'],
    ['closed', { status: 'closed' } as const, 'agent is shutting down; resend later'],
  ])('buffer %s → AR with ERR 207', async (_name, result, text) => {
    const { handler, sink, events } = setup();
    sink.reply = () => Promise.resolve(result);
    const a = ack(await handler.handle(asFrame(message({ id: 'X7' }))));
    expect(a.code).toBe('AR');
    expect(a.msa2.toString('latin1')).toBe('X7');
    expect(errCode(a)).toBe(207);
    expect(a.err?.[8]).toBe(text);
    expect(events.acceptedInfo.length).toBe(0);
    expect(events.refusedInfo.map((r) => r.code)).toEqual([207]);
  });

  it('a failing commit → AR with ERR 207 (never AA)', async () => {
    const { handler, sink } = setup();
    sink.reply = () => Promise.reject(new Error('disk I/O error'));
    const a = ack(await handler.handle(asFrame(message({ id: 'X8' }))));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(207);
    expect(a.err?.[8]).toBe('message could not be stored; resend later');
  });

  it('while draining → AR 207 and the sink is not called', async () => {
    const { handler, sink } = setup({ draining: () => true });
    const a = ack(await handler.handle(asFrame(message({ id: 'X9' }))));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(207);
    expect(sink.calls.length).toBe(0);
  });

  it('empty MSH-10 → AE with ERR 101 at MSH-10, nothing stored', async () => {
    const { handler, sink, events } = setup();
    const a = ack(await handler.handle(asFrame(message({ id: '' }))));
    expect(a.code).toBe('AE');
    expect(a.msa2.length).toBe(0);
    expect(a.err?.[2]).toBe('MSH^1^10');
    expect(a.err?.[3]).toBe('101^Required field missing^HL70357');
    expect(a.header.receivingApplication).toBe('SAPP');
    expect(sink.calls.length).toBe(0);
    expect(events.refusedInfo.map((r) => r.code)).toEqual([101]);
  });

  it('empty MSH-10 in a v2.3 message → AE with ERR-1 ELD', async () => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(message({ id: '', version: '2.3', type: 'ADT^A04' }))));
    expect(a.code).toBe('AE');
    expect(a.err?.[1]).toBe('MSH^1^10^101&MSH-10 message control id is empty&HL70357');
    expect(a.header.messageTypeField).toBe('ACK^A04');
    expect(sink.calls.length).toBe(0);
  });

  it.each([
    ['no MSH', b('PID|1||123\rOBX|1\r')],
    ['empty frame', Buffer.alloc(0)],
    ['blank lines only', b('\r\n\r\n')],
  ])('%s → AR with ERR 101, default delimiters, empty MSA-2, nothing stored', async (_name, payload) => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AR');
    expect(a.msa2.length).toBe(0);
    expect(errCode(a)).toBe(101);
    expect(a.header.delimiters.encodingCharacters).toBe('^~\\&');
    expect(sink.calls.length).toBe(0);
  });

  it('a segment before the first MSH → AR with ERR 100, nothing stored', async () => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(Buffer.concat([b('ZZZ|stray\r'), message()]))));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(100);
    expect(sink.calls.length).toBe(0);
  });

  it('an invalid MSH-2 → AR with ERR 100, nothing stored', async () => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(b('MSH||A|B|C|D|T||ADT^A01|ID|P|2.5\rPID|1\r'))));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(100);
    expect(a.err?.[2]).toBe('MSH^1^2');
    expect(sink.calls.length).toBe(0);
  });
});

describe('FrameHandler: several messages in one frame', () => {
  it('every message stored in one append, exact slices, one AA for the first', async () => {
    const { handler, sink, events } = setup();
    const ms = [message({ id: 'M1' }), message({ id: 'M2', type: 'ORU^R01' }, '\n'), message({ id: 'M3' }, '\r\n')];
    const payload = Buffer.concat([ms[0]!, b('\r'), ms[1]!, b('\n\n'), ms[2]!]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('M1');
    expect(sink.calls.length).toBe(1);
    expect(sink.stored.map((m) => m.payload.toString('hex'))).toEqual(ms.map((m) => m.toString('hex')));
    expect(sink.stored.map((m) => m.meta.controlId)).toEqual(['M1', 'M2', 'M3']);
    expect(events.acceptedInfo[0]?.messages).toBe(3);
    expect(events.responses).toEqual(['AA']);
  });

  it('an FHS/BHS batch: every message stored, batch segments in none, one response', async () => {
    const { handler, sink } = setup();
    const m1 = message({ id: 'B1' });
    const m2 = message({ id: 'B2' });
    const m3 = message({ id: 'B3' });
    const payload = Buffer.concat([b('FHS|^~\\&|S|F\rBHS|^~\\&|S|F\r'), m1, m2, b('BTS|2\rBHS|^~\\&|S|F\r'), m3, b('BTS|1\rFTS|2\r')]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('B1');
    expect(sink.calls.length).toBe(1);
    expect(sink.stored.map((m) => m.payload.toString('hex'))).toEqual([m1, m2, m3].map((m) => m.toString('hex')));
    for (const m of sink.stored) expect(/(^|\r)(FHS|BHS|BTS|FTS)\|/.test(m.payload.toString('latin1'))).toBe(false);
  });

  it.each([
    ['fhs-bhs_v2.5_pyhl7-2batches.batch.hl7', 3, null], // MSH-15 NE: stored, no response
    ['bhs-bts_v2.5_pyhl7.batch.hl7', 2, null],
    ['fhs-bhs_v2.5.1_prs-20msgs-utf8.batch.hl7', 20, null],
    ['fhs-bhs-no-trailers_v2.4_mirth.batch.hl7', 1, 'CA'],
    ['multi-siu_v2.3_mirth-no-bhs.batch.hl7', 3, 'AA'],
    ['mirth-TestADT-124msgs.batch.hl7', 124, 'AA'],
  ])('real multi-message file %s in one frame: %i messages stored, response %s', async (file, count, code) => {
    const { handler, sink } = setup();
    const payload = readSample(file);
    const response = await handler.handle(asFrame(payload));
    expect(sink.calls.length).toBe(1);
    expect(sink.stored.length).toBe(count);
    const spans = splitMessages(payload).messages;
    expect(sink.stored.map((m) => m.payload.toString('hex'))).toEqual(spans.map((s) => payload.subarray(s.start, s.end).toString('hex')));
    if (code === null) expect(response).toBeNull();
    else {
      const a = ack(response);
      expect(a.code).toBe(code);
      const first = parseHeader(sink.stored[0]!.payload).header;
      expect(a.msa2.toString('latin1')).toBe(first?.controlId);
    }
  });

  it('one message with an empty MSH-10 makes the whole frame refused: nothing stored', async () => {
    const { handler, sink } = setup();
    const payload = Buffer.concat([message({ id: 'OK1' }), message({ id: '' }), message({ id: 'OK3' })]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AE');
    expect(errCode(a)).toBe(101);
    expect(sink.calls.length).toBe(0);
  });

  it('the real blank-separated file (two messages with empty MSH-10) is refused whole: nothing stored', async () => {
    const { handler, sink } = setup();
    const a = ack(await handler.handle(asFrame(readSample('multi-oml-oul_v2.5.1_hapi-blank-separated.batch.hl7'))));
    expect(a.code).toBe('AE');
    expect(errCode(a)).toBe(101);
    expect(sink.calls.length).toBe(0);
  });

  it('one message with an invalid MSH-2 makes the whole frame rejected: nothing stored', async () => {
    const { handler, sink } = setup();
    const payload = Buffer.concat([message({ id: 'OK1' }), b('MSH|^ \\&|A|B|C|D|T||ADT^A01|BAD|P|2.5\r')]);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(100);
    expect(sink.calls.length).toBe(0);
  });

  it('a frame with several messages refused as a whole when the buffer is full', async () => {
    const { handler, sink } = setup();
    sink.reply = () => Promise.resolve({ status: 'full' });
    const a = ack(await handler.handle(asFrame(Buffer.concat([message({ id: 'P1' }), message({ id: 'P2' })]))));
    expect(a.code).toBe('AR');
    expect(a.msa2.toString('latin1')).toBe('P1');
    expect(errCode(a)).toBe(207);
  });

  it('duplicates reported by the sink are acknowledged AA and counted', async () => {
    const { handler, sink, events } = setup();
    sink.reply = (ms) => Promise.resolve({ status: 'committed', outcomes: ms.map((_m, i) => ({ status: i === 0 ? ('stored' as const) : ('duplicate' as const), seq: 1 })) });
    const a = ack(await handler.handle(asFrame(Buffer.concat([message({ id: 'D' }), message({ id: 'D' })]))));
    expect(a.code).toBe('AA');
    expect(events.acceptedInfo[0]?.duplicates).toBe(1);
  });
});

describe('FrameHandler: every corpus file as one frame', () => {
  /** The accept acknowledgement the policy asks for after a commit, derived from MSH-15/16 by hand. */
  function expectedOnCommit(h: MessageHeader): string | null {
    if (h.messageType === 'ACK') return null;
    const m15 = h.acceptAckType.trim().toUpperCase();
    const m16 = h.applicationAckType.trim();
    if (m15 === '' && m16 === '') return 'AA';
    if (m15 === 'NE' || m15 === 'ER') return null;
    return 'CA';
  }

  it.each(loadManifest().map((e) => [e.file, e.messages] as const))('%s', async (file, count) => {
    const { handler, sink } = setup();
    const payload = readSample(file);
    const response = await handler.handle(asFrame(payload));
    const spans = splitMessages(payload).messages;
    expect(spans.length).toBe(count);
    const headers = spans.map((sp) => parseHeader(payload.subarray(sp.start, sp.end)));
    if (headers.some((r) => !r.ok)) {
      // The real messages with an empty MSH-10: the frame is refused whole.
      expect(sink.calls.length).toBe(0);
      const a = ack(response);
      expect(a.code).toBe('AE');
      expect(errCode(a)).toBe(101);
      return;
    }
    // Stored: every message, byte for byte (a single message keeps any BOM it arrived with).
    expect(sink.calls.length).toBe(1);
    const expectedPayloads = count === 1 && spans.length === 1 && splitMessages(payload).batch === false ? [payload] : spans.map((sp) => payload.subarray(sp.start, sp.end));
    expect(sink.stored.map((m) => m.payload.toString('hex'))).toEqual(expectedPayloads.map((p) => p.toString('hex')));
    const first = headers.map((r) => r.header!).find((h) => h.messageType !== 'ACK') ?? headers[0]!.header!;
    const code = expectedOnCommit(first);
    if (code === null) {
      expect(response).toBeNull();
      return;
    }
    const a = ack(response);
    expect(a.code).toBe(code);
    expect(a.msa2.equals(Buffer.from(first.controlId, 'latin1'))).toBe(true);
    expect(a.header.delimiters).toEqual(first.delimiters);
    expect(a.header.versionField).toBe(first.versionField);
    expect(a.header.receivingApplication).toBe(first.sendingApplication);
    expect(a.header.sendingFacility).toBe(first.receivingFacility);
  });
});

describe('FrameHandler with the real MessageBuffer', () => {
  let dir: string;
  let buffers: MessageBuffer[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-frame-handler-'));
    buffers = [];
  });

  afterEach(async () => {
    for (const buf of buffers) await buf.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(maxBytes: number): Promise<MessageBuffer> {
    const keyring = Keyring.loadOrCreate(join(dir, 'keys.json'));
    const buf = await MessageBuffer.open({ path: join(dir, 'buffer.db'), keyring, maxBytes });
    buffers.push(buf);
    return buf;
  }

  it('AA after the durable commit; the stored row decrypts to the exact bytes', async () => {
    const buf = await open(10 * 1024 * 1024);
    const { handler } = setup({ sink: buf });
    const payload = readSample('adt-a40_v2.3.1_ipf-latin1-bytes.hl7'); // raw ISO-8859-1 bytes, CRLF
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('_mpi_1dd16f73-c85c-4540-857d-8b922f1732de');
    expect(buf.stats().depth).toBe(1);
    const rows = await buf.readOldest(0, 10);
    expect(rows.length).toBe(1);
    expect(rows[0]?.payload.equals(payload)).toBe(true);
    expect(rows[0]?.sourceId).toBe('src-1');
    expect(rows[0]?.receivedAt).toBe(CLOCK);
    expect(rows[0]?.meta.messageType).toBe('ADT');
    expect(rows[0]?.meta.triggerEvent).toBe('A40');
  });

  it('a 124-message frame: one commit; identical bytes under the same MSH-10 stored once, acknowledged AA', async () => {
    const buf = await open(10 * 1024 * 1024);
    // Real clock: dedupe windows are measured from received_at against the wall clock.
    const { handler, events } = setup({ sink: buf, clock: Date.now });
    const payload = readSample('mirth-TestADT-124msgs.batch.hl7');
    const spans = splitMessages(payload).messages;
    const distinct = [...new Set(spans.map((s) => payload.subarray(s.start, s.end).toString('hex')))];
    expect(spans.length).toBe(124);
    expect(distinct.length).toBe(16);
    const a = ack(await handler.handle(asFrame(payload)));
    expect(a.code).toBe('AA');
    expect(a.msa2.toString('latin1')).toBe('603261');
    expect(buf.stats().depth).toBe(16);
    expect(events.acceptedInfo[0]?.duplicates).toBe(108);
    const rows = await buf.readOldest(0, 1000);
    expect(rows.map((r) => r.payload.toString('hex'))).toEqual(distinct);
    // Sent again: all duplicates, still AA, nothing new stored.
    expect(ack(await handler.handle(asFrame(payload))).code).toBe('AA');
    expect(buf.stats().depth).toBe(16);
    expect(events.acceptedInfo[1]?.duplicates).toBe(124);
  });

  it('with dedupe off every message of the frame is stored, in order', async () => {
    const buf = await open(10 * 1024 * 1024);
    const { handler } = setup({ sink: buf, dedupeWindowSecs: 0 });
    const payload = readSample('fhs-bhs_v2.5_pyhl7-2batches.batch.hl7');
    expect(await handler.handle(asFrame(payload))).toBeNull(); // MSH-15 NE
    const spans = splitMessages(payload).messages;
    const rows = await buf.readOldest(0, 100);
    expect(rows.map((r) => r.payload.toString('hex'))).toEqual(spans.map((s) => payload.subarray(s.start, s.end).toString('hex')));
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('buffer full → AR with ERR 207 and nothing stored', async () => {
    const first = message({ id: 'FILL-1' });
    const buf = await open(first.length + 10);
    const { handler } = setup({ sink: buf });
    expect(ack(await handler.handle(asFrame(first))).code).toBe('AA');
    const a = ack(await handler.handle(asFrame(message({ id: 'FILL-2' }))));
    expect(a.code).toBe('AR');
    expect(a.msa2.toString('latin1')).toBe('FILL-2');
    expect(errCode(a)).toBe(207);
    expect(buf.stats().depth).toBe(1);
    expect(buf.stats().full).toBe(true);
    const rows = await buf.readOldest(0, 10);
    expect(rows.map((r) => r.meta.controlId)).toEqual(['FILL-1']);
  });

  it('a closed buffer → AR with ERR 207', async () => {
    const buf = await open(1024 * 1024);
    const { handler } = setup({ sink: buf });
    await buf.close();
    const a = ack(await handler.handle(asFrame(message({ id: 'LATE' }))));
    expect(a.code).toBe('AR');
    expect(errCode(a)).toBe(207);
    expect(a.err?.[8]).toBe('agent is shutting down; resend later');
  });
});
