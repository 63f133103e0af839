import { describe, expect, it } from 'vitest';
import { readSample } from '../../test/helpers/samples.js';
import { ackCodeFor, buildAck, compareVersions, isAcknowledgement, isEnhancedMode, type AckCode, type AckError, type Outcome } from './ack.js';
import { ERR_APPLICATION_INTERNAL, ERR_REQUIRED_FIELD_MISSING, ERR_SEGMENT_SEQUENCE, ERR_VALUE_TOO_LONG } from './error-codes.js';
import { parseHeader, type MessageHeader } from './header.js';

const NOW = new Date(2024, 0, 2, 3, 4, 5, 67); // local time
const p2 = (n: number): string => String(n).padStart(2, '0');
const LOCAL_TS_PREFIX = `${NOW.getFullYear()}${p2(NOW.getMonth() + 1)}${p2(NOW.getDate())}${p2(NOW.getHours())}${p2(NOW.getMinutes())}${p2(NOW.getSeconds())}.067`;

function msg(msh: string, rest = '\rPID|1\r'): Buffer {
  return Buffer.from(msh + rest, 'latin1');
}

/** The header of a message, whether or not MSH-10 is valued. */
function hdr(bytes: Buffer): MessageHeader {
  const r = parseHeader(bytes);
  if (!r.header) throw new Error('no header');
  return r.header;
}

interface ParsedAck {
  header: MessageHeader;
  segments: string[][];
  msa: string[];
  err: string[] | undefined;
}

/** Parses a built ACK back; fails the test when it is not well formed. */
function parseAck(ack: Buffer): ParsedAck {
  const r = parseHeader(ack);
  if (!r.ok) throw new Error(`ACK does not parse: ${r.problem.reason}`);
  const text = ack.toString('latin1');
  expect(text.endsWith('\r')).toBe(true);
  expect(text.includes('\n')).toBe(false);
  const f = r.header.delimiters.field;
  const segments = text.slice(0, -1).split('\r').map((s) => s.split(f));
  expect(segments.every((s) => s[0] !== '')).toBe(true); // no empty segment
  const msa = segments.find((s) => s[0] === 'MSA');
  if (!msa) throw new Error('ACK has no MSA');
  expect(segments[1]?.[0]).toBe('MSA');
  expect(r.header.messageType).toBe('ACK');
  return { header: r.header, segments, msa, err: segments.find((s) => s[0] === 'ERR') };
}

const ORIGINAL = 'MSH|^~\\&|SAPP|SFAC|RAPP|RFAC|20240101120000||ADT^A01^ADT_A01|MSG-1|P|2.5.1';

describe('ackCodeFor', () => {
  const outcomes: Outcome[] = ['accepted', 'error', 'rejected'];
  const withAckTypes = (msh15: string, msh16: string): MessageHeader => hdr(msg(`${ORIGINAL}|||${msh15}|${msh16}`));

  it('original mode (MSH-15 and MSH-16 empty): AA / AE / AR', () => {
    const h = hdr(msg(ORIGINAL));
    expect(isEnhancedMode(h)).toBe(false);
    expect(outcomes.map((o) => ackCodeFor(h, o))).toEqual(['AA', 'AE', 'AR']);
    expect(outcomes.map((o) => ackCodeFor(withAckTypes('', ''), o))).toEqual(['AA', 'AE', 'AR']);
  });

  it('no header at all: original mode codes', () => {
    expect(outcomes.map((o) => ackCodeFor(undefined, o))).toEqual(['AA', 'AE', 'AR']);
  });

  it.each<[string, string, (AckCode | null)[]]>([
    ['AL', '', ['CA', 'CE', 'CR']],
    ['AL', 'NE', ['CA', 'CE', 'CR']],
    ['NE', '', [null, null, null]],
    ['NE', 'AL', [null, null, null]],
    ['ER', '', [null, 'CE', 'CR']],
    ['ER', 'AL', [null, 'CE', 'CR']],
    ['SU', '', ['CA', null, null]],
    ['SU', 'ER', ['CA', null, null]],
    ['', 'AL', ['CA', 'CE', 'CR']], // empty MSH-15 with MSH-16 valued: treated as AL
    ['', 'NE', ['CA', 'CE', 'CR']],
    ['al', '', ['CA', 'CE', 'CR']],
    ['ne', '', [null, null, null]],
  ])('enhanced mode MSH-15=%j MSH-16=%j → accepted/error/rejected = %j', (msh15, msh16, expected) => {
    const h = withAckTypes(msh15, msh16);
    expect(isEnhancedMode(h)).toBe(true);
    expect(outcomes.map((o) => ackCodeFor(h, o))).toEqual(expected);
  });

  it('a whitespace-only MSH-15/MSH-16 is not a value: original mode', () => {
    // Real data: adt-a01_v2.3_fhirconv-bom.hl7 ends its MSH with "|||| " (MSH-15 is a single space).
    const h = withAckTypes(' ', '');
    expect(isEnhancedMode(h)).toBe(false);
    expect(outcomes.map((o) => ackCodeFor(h, o))).toEqual(['AA', 'AE', 'AR']);
    const sample = readSample('adt-a01_v2.3_fhirconv-bom.hl7');
    const s = hdr(sample);
    expect(s.acceptAckType).toBe(' ');
    expect(ackCodeFor(s, 'accepted')).toBe('AA');
    // Padded values still count: " NE " is NE.
    expect(outcomes.map((o) => ackCodeFor(withAckTypes(' NE ', ''), o))).toEqual([null, null, null]);
    expect(outcomes.map((o) => ackCodeFor(withAckTypes(' ', 'AL'), o))).toEqual(['CA', 'CE', 'CR']);
  });

  it('an inbound ACK is never acknowledged, whatever the mode and outcome', () => {
    for (const [m15, m16] of [['', ''], ['AL', 'AL'], ['ER', ''], ['SU', '']]) {
      const h = hdr(msg(`MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|X1|P|2.5|||${m15}|${m16}`, '\rMSA|AA|Y\r'));
      expect(isAcknowledgement(h)).toBe(true);
      expect(outcomes.map((o) => ackCodeFor(h, o))).toEqual([null, null, null]);
    }
    const bare = hdr(readSample('ack_v2.1_hapi-custom-subcomp.hl7')); // MSH-9 "ACK^"
    expect(isAcknowledgement(bare)).toBe(true);
    expect(ackCodeFor(bare, 'accepted')).toBeNull();
    expect(isAcknowledgement(hdr(msg(ORIGINAL)))).toBe(false);
  });
});

describe('buildAck: MSH and MSA', () => {
  it('original AA: exact bytes, MSH-3/4 swapped with MSH-5/6, MSH-11 and MSH-12 kept', () => {
    const h = hdr(msg(ORIGINAL));
    const ack = buildAck(h, { code: 'AA', ackControlId: 'ACK-1', now: NOW });
    const text = ack.toString('latin1');
    const ts = text.split('|')[6] ?? '';
    expect(ts).toMatch(/^\d{14}\.\d{3}[+-]\d{4}$/);
    expect(ts.startsWith(LOCAL_TS_PREFIX)).toBe(true);
    expect(text).toBe(`MSH|^~\\&|RAPP|RFAC|SAPP|SFAC|${ts}||ACK^A01^ACK|ACK-1|P|2.5.1\rMSA|AA|MSG-1\r`);
    const p = parseAck(ack);
    expect(p.header.controlId).toBe('ACK-1');
    expect(p.header.sendingApplication).toBe('RAPP');
    expect(p.header.receivingFacility).toBe('SFAC');
    expect(p.err).toBeUndefined();
  });

  it('keeps MSH-11 with components, MSH-12 with a country component, and echoes MSH-18 in position 18', () => {
    const h = hdr(msg('MSH|^~\\&|A^1.2^ISO|B|C|D&x|T||MDM^T01|ID|P^T|2.5^DEU|||NE|NE|DEU|UNICODE UTF-8~ISO IR87|DE'));
    const p = parseAck(buildAck(h, { code: 'AA', ackControlId: 'K', now: NOW }));
    expect(p.header.fields[3]).toBe('C');
    expect(p.header.fields[4]).toBe('D&x');
    expect(p.header.fields[5]).toBe('A^1.2^ISO');
    expect(p.header.fields[6]).toBe('B');
    expect(p.header.fields[11]).toBe('P^T');
    expect(p.header.fields[12]).toBe('2.5^DEU');
    expect(p.header.fields.length).toBe(19);
    expect(p.header.fields[18]).toBe('UNICODE UTF-8~ISO IR87');
    expect(p.header.fields.slice(13, 18)).toEqual(['', '', '', '', '']);
    // The ACK itself requests no acknowledgement.
    expect(p.header.acceptAckType).toBe('');
    expect(p.header.applicationAckType).toBe('');
    expect(p.header.messageTypeField).toBe('ACK^T01^ACK');
  });

  it.each([
    ['2.1', 'ACK'],
    ['2.2', 'ACK'],
    ['2.3', 'ACK^A01'],
    ['2.3.1', 'ACK^A01^ACK'],
    ['2.4', 'ACK^A01^ACK'],
    ['2.5', 'ACK^A01^ACK'],
    ['2.8', 'ACK^A01^ACK'],
  ])('MSH-9 for version %s is %s', (version, type) => {
    const h = hdr(msg(`MSH|^~\\&|A|B|C|D|T||ADT^A01|ID|P|${version}`));
    const p = parseAck(buildAck(h, { code: 'AA', ackControlId: 'K', now: NOW }));
    expect(p.header.messageTypeField).toBe(type);
    expect(p.header.versionField).toBe(version);
  });

  it('MSH-9 without a trigger event is plain ACK', () => {
    const h = hdr(msg('MSH|^~\\&|A|B|C|D|T||ADT|ID|P|2.5'));
    expect(parseAck(buildAck(h, { code: 'AA', ackControlId: 'K', now: NOW })).header.messageTypeField).toBe('ACK');
  });

  it('MSA-2 echoes MSH-10 byte for byte (non-ASCII, invalid UTF-8, escape and component characters)', () => {
    const raw = Buffer.from([0x49, 0x44, 0xc4, 0xe2, 0x80, 0x93, 0xff, 0x5c, 0x5e, 0x26, 0x20]);
    const bytes = Buffer.concat([Buffer.from('MSH|^~\\&|A|B|C|D|T||ADT^A01|', 'latin1'), raw, Buffer.from('|P|2.5\r', 'latin1')]);
    const ack = buildAck(hdr(bytes), { code: 'AA', ackControlId: 'K', now: NOW });
    const msaStart = ack.indexOf('\rMSA|AA|') + '\rMSA|AA|'.length;
    expect(ack.subarray(msaStart, msaStart + raw.length).equals(raw)).toBe(true);
    expect(ack.subarray(msaStart + raw.length).equals(Buffer.from('\r', 'latin1'))).toBe(true);
    const p = parseAck(ack);
    expect(Buffer.from(p.msa[2] ?? '', 'latin1').equals(raw)).toBe(true);
  });

  it('uses the inbound delimiters: field ^ with MSH-2 ~|\\& (real sample)', () => {
    const h = hdr(readSample('adt-a24_v2.4_hapi-custom-separators.hl7'));
    const ack = buildAck(h, { code: 'CA', ackControlId: 'K9', now: NOW });
    const text = ack.toString('latin1');
    const ts = text.split('^')[6] ?? '';
    expect(text).toBe(`MSH^~|\\&^RECEIVING^200^SENDING^200M^${ts}^^ACK~A24~ACK^K9^T^2.4\rMSA^CA^2003582144\r`);
    const p = parseAck(ack);
    expect(p.header.delimiters).toEqual(h.delimiters);
    expect(p.msa).toEqual(['MSA', 'CA', '2003582144']);
  });

  it.each([
    ['bar-p01_v2.4-labelled_hapi-3-encoding-chars.hl7', '^~}'],
    ['bar-p01_v2.4-labelled_hapi-custom-subcomp.hl7', '^~\\}'],
    ['oru-r01_v2.5.1_prs-hex-escape-msh2-5chars.hl7', '^~\\&#'],
    ['msh-only_v2.5.1_prs-all-msh-fields.hl7', '^~\\&#'],
  ])('keeps MSH-2 exactly as received (%s)', (file, enc) => {
    const h = hdr(readSample(file));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: { code: ERR_REQUIRED_FIELD_MISSING, text: 'x', location: { segment: 'MSH', field: 10 } } });
    expect(ack.subarray(0, 4 + enc.length + 1).toString('latin1')).toBe(`MSH|${enc}|`);
    const p = parseAck(ack);
    expect(p.header.delimiters.encodingCharacters).toBe(enc);
    expect(p.msa[2]).toBe(h.controlId);
  });

  it('without an inbound header: default delimiters, empty MSH-3..6, MSA-2 empty, version 2.5, processing id P', () => {
    const ack = buildAck(undefined, { code: 'AR', ackControlId: 'K0', now: NOW, error: { code: ERR_REQUIRED_FIELD_MISSING, text: 'no MSH segment in frame', location: { segment: 'MSH' } } });
    const text = ack.toString('latin1');
    const ts = text.split('|')[6] ?? '';
    expect(text).toBe(`MSH|^~\\&|||||${ts}||ACK|K0|P|2.5\rMSA|AR|\rERR||MSH^1^|101^Required field missing^HL70357|E||||no MSH segment in frame\r`);
    parseAck(ack);
  });
});

describe('buildAck: ERR (HL7 table 0357)', () => {
  const error = (code: AckError['code'], text: string, location?: AckError['location']): AckError => (location ? { code, text, location } : { code, text });

  it('v2.5+: ERR-2 location, ERR-3 coded error, ERR-4 severity, ERR-8 text', () => {
    const h = hdr(msg(ORIGINAL));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: error(101, 'MSH-10 message control id is empty', { segment: 'MSH', field: 10 }) });
    const lines = ack.toString('latin1').split('\r');
    expect(lines[1]).toBe('MSA|AE|MSG-1');
    expect(lines[2]).toBe('ERR||MSH^1^10|101^Required field missing^HL70357|E||||MSH-10 message control id is empty');
    expect(lines.length).toBe(4);
    expect(lines[3]).toBe('');
    const p = parseAck(ack);
    expect(p.err?.[3]).toBe('101^Required field missing^HL70357');
    expect(p.err?.[4]).toBe('E');
  });

  it.each([
    [ERR_SEGMENT_SEQUENCE, 'Segment sequence error'],
    [ERR_REQUIRED_FIELD_MISSING, 'Required field missing'],
    [ERR_VALUE_TOO_LONG, 'Value too long'],
    [ERR_APPLICATION_INTERNAL, 'Application internal error'],
  ] as const)('code %i carries its table 0357 text', (code, label) => {
    const ack = buildAck(hdr(msg(ORIGINAL)), { code: 'AR', ackControlId: 'K', now: NOW, error: error(code, 'reason') });
    expect(ack.toString('latin1').split('\r')[2]).toBe(`ERR|||${code}^${label}^HL70357|E||||reason`);
  });

  it.each(['2.1', '2.2', '2.3', '2.3.1', '2.4'])('v%s: ERR-1 as an ELD (segment^sequence^field^code&text&table)', (version) => {
    const h = hdr(msg(`MSH|^~\\&|A|B|C|D|T||ORM^O01|ID|P|${version}`));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: error(101, 'MSH-10 message control id is empty', { segment: 'MSH', field: 10 }) });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|MSH^1^10^101&MSH-10 message control id is empty&HL70357');
    parseAck(ack);
  });

  it('v2.4 ERR without a location leaves the ELD position empty', () => {
    const h = hdr(msg('MSH|^~\\&|A|B|C|D|T||ORM^O01|ID|P|2.4'));
    const ack = buildAck(h, { code: 'AR', ackControlId: 'K', now: NOW, error: error(207, 'agent buffer is full; resend later') });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|^^^207&agent buffer is full; resend later&HL70357');
  });

  it('ERR uses the inbound delimiters (field ^, component ~) and escapes our own text', () => {
    const h = hdr(readSample('adt-a24_v2.4_hapi-custom-separators.hl7')); // v2.4 → ELD layout
    const ack = buildAck(h, { code: 'CE', ackControlId: 'K', now: NOW, error: error(101, 'a^b~c|d\\e&f\rg', { segment: 'MSH', field: 10 }) });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR^MSH~1~10~101&a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f g&HL70357');
    const p = parseAck(ack);
    expect(p.err?.length).toBe(2);
  });

  it('v2.5 text escaping with standard delimiters', () => {
    const ack = buildAck(hdr(msg(ORIGINAL)), { code: 'AE', ackControlId: 'K', now: NOW, error: error(100, 'x|y^z~w\\v&u\nt') });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|||100^Segment sequence error^HL70357|E||||x\\F\\y\\S\\z\\R\\w\\E\\v\\T\\u t');
  });

  it('MSH-2 ^~} declares no subcomponent separator: the ELD carries the code alone, no undeclared &', () => {
    const h = hdr(readSample('bar-p01_v2.4-labelled_hapi-3-encoding-chars.hl7'));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: error(101, 'MSH-10 message control id is empty', { segment: 'MSH', field: 10 }) });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|MSH^1^10^101');
    expect(ack.includes('&')).toBe(false);
    parseAck(ack);
  });

  it('escapes with a custom escape character (MSH-2 ^~\\}: escape is \\, subcomponent })', () => {
    const h = hdr(readSample('bar-p01_v2.4-labelled_hapi-custom-subcomp.hl7'));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: error(101, 'a}b|c&d') });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|^^^101}a\\T\\b\\F\\c&d}HL70357');
    parseAck(ack);
  });

  it('escapes with a custom escape character (v2.5, MSH-2 ^~}: escape is })', () => {
    const h = hdr(msg('MSH|^~}|A|B|C|D|T||ADT^A01|ID|P|2.5'));
    const ack = buildAck(h, { code: 'AE', ackControlId: 'K', now: NOW, error: error(101, 'a}b|c^d') });
    expect(ack.toString('latin1').split('\r')[2]).toBe('ERR|||101^Required field missing^HL70357|E||||a}E}b}F}c}S}d');
    parseAck(ack);
  });
});

describe('compareVersions', () => {
  it('compares dotted versions numerically', () => {
    expect(compareVersions('2.3.1', '2.3')).toBe(1);
    expect(compareVersions('2.3', '2.3.1')).toBe(-1);
    expect(compareVersions('2.5', '2.5.0')).toBe(0);
    expect(compareVersions('2.10', '2.9')).toBe(1);
    expect(compareVersions('2.4', '2.5')).toBe(-1);
    expect(compareVersions('', '2.5')).toBe(1);
    expect(compareVersions('V2', '2.5')).toBe(1);
  });
});
