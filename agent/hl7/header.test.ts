import { describe, expect, it } from 'vitest';
import { readSample } from '../../test/helpers/samples.js';
import { ERR_REQUIRED_FIELD_MISSING, ERR_SEGMENT_SEQUENCE } from './error-codes.js';
import { byteStringToText, parseHeader, segmentEnd, skipBom, skipLineBreaks, type HeaderResult, type MessageHeader } from './header.js';

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

const FULL_MSH =
  'MSH|^~\\&|SENDAPP^1.2.3^ISO|SENDFAC|RECVAPP|RECVFAC^7.1^ISO|20240102030405||ORU^R01^ORU_R01|CTRL-42|P^T|2.5.1^DEU|17|cont|AL|NE|USA|UNICODE UTF-8|ENG';

function header(result: HeaderResult): MessageHeader {
  if (!result.ok) throw new Error(`expected ok header, got problem ${result.problem.code}: ${result.problem.reason}`);
  return result.header;
}

function latin1(...parts: (string | Buffer | number[])[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

describe('parseHeader: fields', () => {
  it('reads MSH-1..MSH-12, MSH-15, MSH-16 and MSH-18 from a full MSH', () => {
    const h = header(parseHeader(latin1(FULL_MSH, '\rPID|1||X\r')));
    expect(h.delimiters).toEqual({ field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', encodingCharacters: '^~\\&' });
    expect(h.fields[0]).toBe('MSH');
    expect(h.fields[1]).toBe('|');
    expect(h.fields[2]).toBe('^~\\&');
    expect(h.fields.length).toBe(20);
    expect(h.fields[19]).toBe('ENG');
    expect(h.sendingApplication).toBe('SENDAPP^1.2.3^ISO');
    expect(h.sendingFacility).toBe('SENDFAC');
    expect(h.receivingApplication).toBe('RECVAPP');
    expect(h.receivingFacility).toBe('RECVFAC^7.1^ISO');
    expect(h.fields[7]).toBe('20240102030405');
    expect(h.fields[8]).toBe('');
    expect(h.messageTypeField).toBe('ORU^R01^ORU_R01');
    expect(h.messageType).toBe('ORU');
    expect(h.triggerEvent).toBe('R01');
    expect(h.messageStructure).toBe('ORU_R01');
    expect(h.controlId).toBe('CTRL-42');
    expect(h.processingId).toBe('P^T');
    expect(h.versionField).toBe('2.5.1^DEU');
    expect(h.version).toBe('2.5.1');
    expect(h.fields[13]).toBe('17');
    expect(h.fields[14]).toBe('cont');
    expect(h.acceptAckType).toBe('AL');
    expect(h.applicationAckType).toBe('NE');
    expect(h.fields[17]).toBe('USA');
    expect(h.characterSet).toBe('UNICODE UTF-8');
  });

  it('gives empty strings for fields that are absent', () => {
    const h = header(parseHeader(latin1('MSH|^~\\&|||||||ADT|C1')));
    expect(h.messageType).toBe('ADT');
    expect(h.triggerEvent).toBe('');
    expect(h.messageStructure).toBe('');
    expect(h.controlId).toBe('C1');
    expect(h.processingId).toBe('');
    expect(h.versionField).toBe('');
    expect(h.version).toBe('');
    expect(h.acceptAckType).toBe('');
    expect(h.applicationAckType).toBe('');
    expect(h.characterSet).toBe('');
    expect(h.fields.length).toBe(11);
  });

  it.each([
    ['CR', '\r'],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['none', ''],
  ])('stops MSH at a %s terminator and never includes terminator bytes in a field', (_name, t) => {
    const body = t === '' ? 'MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ID1|P|2.3' : `MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ID1|P|2.3${t}EVN|A01${t}PID|1${t}`;
    const h = header(parseHeader(latin1(body)));
    expect(h.versionField).toBe('2.3');
    expect(h.version).toBe('2.3');
    expect(h.controlId).toBe('ID1');
    expect(h.fields.length).toBe(13);
    expect(h.fields.some((f) => f.includes('\r') || f.includes('\n'))).toBe(false);
  });

  it('skips a leading UTF-8 BOM and leading blank lines', () => {
    for (const prefix of [BOM, latin1('\r\n\r'), latin1(BOM, '\n\n')]) {
      const h = header(parseHeader(latin1(prefix, 'MSH|^~\\&|A||||||ADT^A04|BOMID|T|2.3\nPID|1\n')));
      expect(h.controlId).toBe('BOMID');
      expect(h.sendingApplication).toBe('A');
      expect(h.processingId).toBe('T');
    }
  });

  it('returns MSH-10 byte for byte, including non-ASCII and invalid UTF-8 bytes', () => {
    const raw = Buffer.from([0x41, 0xc4, 0xd6, 0xe2, 0x80, 0x93, 0xff, 0x00, 0x7f, 0x5e, 0x42]); // contains ^ (a component)
    const msg = latin1('MSH|^~\\&|A|B|C|D|T||ADT^A01|', raw, '|P|2.5\r');
    const h = header(parseHeader(msg));
    expect(Buffer.from(h.controlId, 'latin1').equals(raw)).toBe(true);
    expect(h.controlId.length).toBe(raw.length);
  });

  it('keeps a trailing space in MSH-10 (exactly as encoded, no trimming)', () => {
    const h = header(parseHeader(latin1('MSH|^~\\&|A|B|C|D|T||ADT^A01| X1 |P|2.5\r')));
    expect(h.controlId).toBe(' X1 ');
  });
});

describe('parseHeader: encoding characters', () => {
  it('reads field separator ^ with MSH-2 ~|\\& (real sample, CRLF)', () => {
    const bytes = readSample('adt-a24_v2.4_hapi-custom-separators.hl7');
    const h = header(parseHeader(bytes));
    expect(h.delimiters).toEqual({ field: '^', component: '~', repetition: '|', escape: '\\', subcomponent: '&', encodingCharacters: '~|\\&' });
    expect(h.sendingApplication).toBe('SENDING');
    expect(h.sendingFacility).toBe('200M');
    expect(h.receivingApplication).toBe('RECEIVING');
    expect(h.receivingFacility).toBe('200');
    expect(h.messageTypeField).toBe('ADT~A24');
    expect(h.messageType).toBe('ADT');
    expect(h.triggerEvent).toBe('A24');
    expect(h.controlId).toBe('2003582144');
    expect(h.processingId).toBe('T');
    expect(h.version).toBe('2.4');
    expect(h.acceptAckType).toBe('AL');
    expect(h.applicationAckType).toBe('AL');
  });

  it('reads a 3-character MSH-2 ^~} (escape is }, no subcomponent separator given)', () => {
    const h = header(parseHeader(readSample('bar-p01_v2.4-labelled_hapi-3-encoding-chars.hl7')));
    expect(h.delimiters.encodingCharacters).toBe('^~}');
    expect(h.delimiters.component).toBe('^');
    expect(h.delimiters.repetition).toBe('~');
    expect(h.delimiters.escape).toBe('}');
    expect(h.messageTypeField).toBe('BAR^P01');
    expect(h.controlId).toBe('908594ADT30502185327');
    expect(h.version).toBe('2.4');
  });

  it('reads MSH-2 ^~\\} (subcomponent separator })', () => {
    const h = header(parseHeader(readSample('bar-p01_v2.4-labelled_hapi-custom-subcomp.hl7')));
    expect(h.delimiters).toEqual({ field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '}', encodingCharacters: '^~\\}' });
    expect(h.controlId).toBe('589888ADT30502184808');
  });

  it('reads a 5-character MSH-2 ^~\\&# (truncation character) and keeps it whole', () => {
    const h = header(parseHeader(readSample('oru-r01_v2.5.1_prs-hex-escape-msh2-5chars.hl7')));
    expect(h.delimiters).toEqual({ field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', encodingCharacters: '^~\\&#' });
    expect(h.fields[2]).toBe('^~\\&#');
    expect(h.controlId).toBe('20230816123358');
    expect(h.messageStructure).toBe('ORU_R01');
  });

  it('reads arbitrary delimiters: field #, MSH-2 $*@!', () => {
    const h = header(parseHeader(latin1('MSH#$*@!#APP$X#FAC###20240101##ORM$O01$ORM_O01#ID@7#P#2.5.1######ISO 8859/1\r')));
    expect(h.delimiters).toEqual({ field: '#', component: '$', repetition: '*', escape: '@', subcomponent: '!', encodingCharacters: '$*@!' });
    expect(h.sendingApplication).toBe('APP$X');
    expect(h.messageType).toBe('ORM');
    expect(h.triggerEvent).toBe('O01');
    expect(h.messageStructure).toBe('ORM_O01');
    expect(h.controlId).toBe('ID@7');
    expect(h.characterSet).toBe('ISO 8859/1');
  });

  it('reads the MSH of the raw ISO-8859-1 sample with the non-UTF-8 bytes intact', () => {
    const bytes = readSample('adt-a40_v2.3.1_ipf-latin1-bytes.hl7');
    const h = header(parseHeader(bytes));
    expect(Buffer.from(h.receivingApplication, 'latin1').equals(Buffer.from([0x42, 0x4c, 0xc4, 0x48]))).toBe(true); // BLÄH in latin1
    expect(Buffer.from(h.receivingFacility, 'latin1').equals(Buffer.from([0x42, 0x4c, 0xd6, 0xd6, 0xd6, 0x48, 0x2d, 0x31]))).toBe(true);
    expect(h.controlId).toBe('_mpi_1dd16f73-c85c-4540-857d-8b922f1732de');
    expect(h.processingId).toBe('P^T');
    expect(h.versionField).toBe('2.3.1');
  });

  it('reads a repeating MSH-18 and MSH-12 with a country component', () => {
    const only = header(parseHeader(readSample('msh-only_v2.5.1_prs-all-msh-fields.hl7')));
    expect(only.characterSet).toBe('UTF-8~UNICODE');
    const deu = header(parseHeader(readSample('mdm-t01_v2.5_ipf-utf8-zbe.hl7')));
    expect(deu.versionField).toBe('2.5^DEU');
    expect(deu.version).toBe('2.5');
    expect(deu.acceptAckType).toBe('NE');
    expect(deu.applicationAckType).toBe('NE');
    expect(deu.characterSet).toBe('UNICODE UTF-8');
  });
});

describe('parseHeader: problems', () => {
  it.each([
    ['empty input', Buffer.alloc(0)],
    ['a BOM only', BOM],
    ['blank lines only', latin1('\r\n\r\n')],
    ['a PID first', latin1('PID|1||123\rMSH|^~\\&|A|B|C|D|T||ADT^A01|X|P|2.5\r')],
    ['lower-case msh', latin1('msh|^~\\&|A|B|C|D|T||ADT^A01|X|P|2.5\r')],
    ['a truncated MSH', latin1('MSH|^~\r')],
    ['leading spaces', latin1('  MSH|^~\\&|A|B|C|D|T||ADT^A01|X|P|2.5\r')],
  ])('no MSH (%s) → problem 101, no header', (_name, bytes) => {
    const r = parseHeader(bytes);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem.code).toBe(ERR_REQUIRED_FIELD_MISSING);
    expect(r.problem.code).toBe(101);
    expect(r.problem.location).toEqual({ segment: 'MSH' });
    expect(r.header).toBeUndefined();
  });

  it('empty MSH-10 → problem 101 at MSH-10, with the header still attached', () => {
    const r = parseHeader(latin1('MSH|^~\\&|SA|SF|RA|RF|20240101||ORU^R01||P|2.5|||AL|NE\rPID|1\r'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem.code).toBe(101);
    expect(r.problem.location).toEqual({ segment: 'MSH', field: 10 });
    expect(r.header).toBeDefined();
    expect(r.header?.controlId).toBe('');
    expect(r.header?.sendingApplication).toBe('SA');
    expect(r.header?.receivingFacility).toBe('RF');
    expect(r.header?.messageType).toBe('ORU');
    expect(r.header?.acceptAckType).toBe('AL');
  });

  it('MSH with fewer than 10 fields → problem 101 at MSH-10 with the header', () => {
    const r = parseHeader(latin1('MSH|^~\\&|SA|SF\r'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem.code).toBe(101);
    expect(r.problem.location).toEqual({ segment: 'MSH', field: 10 });
    expect(r.header?.sendingFacility).toBe('SF');
  });

  it('the real messages with empty MSH-10 in the blank-separated corpus file come back as problem 101 with header', () => {
    const bytes = readSample('multi-oml-oul_v2.5.1_hapi-blank-separated.batch.hl7');
    // Both OML^O21 messages from "HIS" have an empty MSH-10; find them by their MSH lines.
    const text = bytes.toString('latin1');
    const starts: number[] = [];
    for (let i = text.indexOf('MSH|'); i !== -1; i = text.indexOf('\rMSH|', i + 1)) starts.push(text[i] === '\r' ? i + 1 : i);
    const empties = starts.map((s) => parseHeader(bytes.subarray(s))).filter((r) => !r.ok);
    expect(empties.length).toBe(2);
    for (const r of empties) {
      if (r.ok) continue;
      expect(r.problem.code).toBe(101);
      expect(r.header?.controlId).toBe('');
      expect(r.header?.messageTypeField).toBe('OML^O21');
    }
  });

  it.each([
    ['MSH followed by a letter', 'MSHA^~\\&A'],
    ['MSH followed by a digit', 'MSH1^~\\&1'],
    ['MSH followed by a space', 'MSH ^~\\& '],
    ['MSH followed by CR', 'MSH\r^~\\&|A|B|C'],
    ['MSH followed by LF', 'MSH\n^~\\&|A|B|C'],
  ])('invalid MSH-1 (%s) → problem 100 at MSH-1, no header', (_name, start) => {
    const r = parseHeader(latin1(start, '|X|Y|Z||ADT^A01|ID|P|2.5\r'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem.code).toBe(ERR_SEGMENT_SEQUENCE);
    expect(r.problem.location).toEqual({ segment: 'MSH', field: 1 });
    expect(r.header).toBeUndefined();
  });

  it.each([
    ['empty', 'MSH||A|B|C|D|T||ADT^A01|ID|P|2.5\r'],
    ['a letter', 'MSH|^~\\x|A|B|C|D|T||ADT^A01|ID|P|2.5\r'],
    ['a digit', 'MSH|^1\\&|A|B|C|D|T||ADT^A01|ID|P|2.5\r'],
    ['a space', 'MSH|^ \\&|A|B|C|D|T||ADT^A01|ID|P|2.5\r'],
    ['the segment end (no fields)', 'MSH|\rPID|1|2|3|4|5\r'],
  ])('invalid MSH-2 (%s) → problem 100 at MSH-2, no header', (_name, body) => {
    const r = parseHeader(latin1(body));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem.code).toBe(100);
    expect(r.problem.location).toEqual({ segment: 'MSH', field: 2 });
    expect(r.header).toBeUndefined();
  });
});

describe('byte helpers', () => {
  it('skipBom skips exactly EF BB BF', () => {
    expect(skipBom(BOM)).toBe(3);
    expect(skipBom(latin1(BOM, 'MSH'))).toBe(3);
    expect(skipBom(Buffer.from([0xef, 0xbb, 0x00]))).toBe(0);
    expect(skipBom(latin1('MSH'))).toBe(0);
    expect(skipBom(latin1('xx', BOM), 2)).toBe(5);
  });

  it('skipLineBreaks and segmentEnd find CR/LF boundaries', () => {
    const b = latin1('\r\n\rAB\nCD\rEF');
    expect(skipLineBreaks(b, 0)).toBe(3);
    expect(segmentEnd(b, 3)).toBe(5);
    expect(segmentEnd(b, 6)).toBe(8);
    expect(segmentEnd(b, 9)).toBe(11);
    expect(skipLineBreaks(b, 11)).toBe(11);
  });

  it('byteStringToText decodes UTF-8 byte strings for display', () => {
    const s = Buffer.from('Nächname–€', 'utf8').toString('latin1');
    expect(byteStringToText(s)).toBe('Nächname–€');
  });
});
