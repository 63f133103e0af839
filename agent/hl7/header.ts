// Reads the MSH header of one HL7 v2 message straight from its bytes.
//
// Everything here works on "byte strings": the payload decoded as latin1, so that one character is
// exactly one byte. Fields sliced from it turn back into the original bytes with
// Buffer.from(s, 'latin1'), which is how the ACK echoes MSH-10 byte for byte whatever the charset.

import { ERR_REQUIRED_FIELD_MISSING, ERR_SEGMENT_SEQUENCE, type HL7ErrorCode } from './error-codes.js';

export interface Delimiters {
  readonly field: string;
  readonly component: string;
  readonly repetition: string;
  readonly escape: string;
  readonly subcomponent: string;
  /** MSH-2 exactly as received (3 to 5 characters in practice). */
  readonly encodingCharacters: string;
}

export interface MessageHeader {
  readonly delimiters: Delimiters;
  /** MSH fields as byte strings, indexed by field number (fields[1] is MSH-1, the field separator). */
  readonly fields: readonly string[];
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly receivingApplication: string;
  readonly receivingFacility: string;
  /** MSH-9 as encoded, and its first three components. */
  readonly messageTypeField: string;
  readonly messageType: string;
  readonly triggerEvent: string;
  readonly messageStructure: string;
  /** MSH-10 exactly as encoded: the value MSA-2 must echo. */
  readonly controlId: string;
  readonly processingId: string;
  /** MSH-12 as encoded, and its first component (the version id). */
  readonly versionField: string;
  readonly version: string;
  readonly acceptAckType: string;
  readonly applicationAckType: string;
  readonly characterSet: string;
}

export interface HeaderProblem {
  readonly code: HL7ErrorCode;
  /** What went wrong, in words safe to log: never message content. */
  readonly reason: string;
  /** Where, as an HL7 location (segment^sequence^field), when known. */
  readonly location?: { segment: string; field?: number };
}

export type HeaderResult =
  | { readonly ok: true; readonly header: MessageHeader }
  | { readonly ok: false; readonly problem: HeaderProblem; readonly header?: MessageHeader };

const CR = 0x0d;
const LF = 0x0a;

/** Offset just past a UTF-8 byte-order mark, or 0. */
export function skipBom(bytes: Uint8Array, start = 0): number {
  return bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf ? start + 3 : start;
}

/** Offset of the first byte that is not a CR or LF, from start. */
export function skipLineBreaks(bytes: Uint8Array, start: number): number {
  let i = start;
  while (i < bytes.length && (bytes[i] === CR || bytes[i] === LF)) i++;
  return i;
}

/** Offset of the first CR or LF at or after start (bytes.length if none). */
export function segmentEnd(bytes: Uint8Array, start: number): number {
  const cr = bytes.indexOf(CR, start);
  const lf = bytes.indexOf(LF, start);
  if (cr === -1) return lf === -1 ? bytes.length : lf;
  if (lf === -1) return cr;
  return Math.min(cr, lf);
}

/**
 * Parses the MSH segment that begins the message (after an optional BOM and blank lines).
 * A message whose header is usable but lacks MSH-10 comes back not ok, with the header attached,
 * so the caller can still address its rejection to the sender.
 */
export function parseHeader(bytes: Buffer): HeaderResult {
  const start = skipLineBreaks(bytes, skipBom(bytes));
  if (
    bytes.length - start < 8 ||
    bytes[start] !== 0x4d /* M */ ||
    bytes[start + 1] !== 0x53 /* S */ ||
    bytes[start + 2] !== 0x48 /* H */
  ) {
    return { ok: false, problem: { code: ERR_REQUIRED_FIELD_MISSING, reason: 'message does not start with an MSH segment', location: { segment: 'MSH' } } };
  }
  const end = segmentEnd(bytes, start);
  const line = bytes.toString('latin1', start, end);
  const field = line.charAt(3);
  if (isSeparatorInvalid(field)) {
    return { ok: false, problem: { code: ERR_SEGMENT_SEQUENCE, reason: 'MSH-1 field separator is missing or invalid', location: { segment: 'MSH', field: 1 } } };
  }
  const parts = line.split(field);
  // parts[0] is "MSH" and parts[i] is MSH-(i+1): MSH-1 is the separator itself, so it has no part.
  const encodingCharacters = parts[1] ?? '';
  if (encodingCharacters.length < 1 || hasInvalidEncodingCharacter(encodingCharacters, field)) {
    return { ok: false, problem: { code: ERR_SEGMENT_SEQUENCE, reason: 'MSH-2 encoding characters are missing or invalid', location: { segment: 'MSH', field: 2 } } };
  }
  const delimiters: Delimiters = {
    field,
    component: encodingCharacters.charAt(0) || '^',
    repetition: encodingCharacters.charAt(1) || '~',
    escape: encodingCharacters.charAt(2) || '\\',
    subcomponent: encodingCharacters.charAt(3) || '&',
    encodingCharacters,
  };
  const fields: string[] = ['MSH', field];
  for (let i = 1; i < parts.length; i++) fields.push(parts[i] ?? '');
  const at = (n: number): string => fields[n] ?? '';
  const messageTypeField = at(9);
  const typeParts = messageTypeField.split(delimiters.component);
  const versionField = at(12);
  const header: MessageHeader = {
    delimiters,
    fields,
    sendingApplication: at(3),
    sendingFacility: at(4),
    receivingApplication: at(5),
    receivingFacility: at(6),
    messageTypeField,
    messageType: typeParts[0] ?? '',
    triggerEvent: typeParts[1] ?? '',
    messageStructure: typeParts[2] ?? '',
    controlId: at(10),
    processingId: at(11),
    versionField,
    version: versionField.split(delimiters.component)[0] ?? '',
    acceptAckType: at(15),
    applicationAckType: at(16),
    characterSet: at(18),
  };
  if (header.controlId === '') {
    return { ok: false, header, problem: { code: ERR_REQUIRED_FIELD_MISSING, reason: 'MSH-10 message control id is empty', location: { segment: 'MSH', field: 10 } } };
  }
  return { ok: true, header };
}

function isSeparatorInvalid(ch: string): boolean {
  return ch === '' || ch === '\r' || ch === '\n' || /[A-Za-z0-9 ]/.test(ch);
}

function hasInvalidEncodingCharacter(chars: string, field: string): boolean {
  for (const ch of chars) {
    if (ch === field || /[A-Za-z0-9\r\n ]/.test(ch)) return true;
  }
  return false;
}

/** The header fields a stored message carries as metadata (type, trigger, control id, sender, version), as text. */
export interface HeaderMetadata {
  readonly messageType: string;
  readonly triggerEvent: string;
  readonly controlId: string;
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly version: string;
}

export function headerMetadata(h: MessageHeader): HeaderMetadata {
  return {
    messageType: byteStringToText(h.messageType),
    triggerEvent: byteStringToText(h.triggerEvent),
    controlId: byteStringToText(h.controlId),
    sendingApplication: byteStringToText(h.sendingApplication),
    sendingFacility: byteStringToText(h.sendingFacility),
    version: byteStringToText(h.version),
  };
}

/** Turns a byte string back into display text (UTF-8 where valid); for metadata, never for payloads. */
export function byteStringToText(s: string): string {
  // Pure ASCII (nearly every header field) reads the same either way: skip the round trip.
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'latin1').toString('utf8');
}
