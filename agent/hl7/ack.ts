// Builds acknowledgements by the policy in DESIGN.md.
//
// Original mode (MSH-15 and MSH-16 empty) answers AA / AE / AR. Enhanced mode (either valued) answers
// the accept acknowledgement CA / CE / CR, filtered by MSH-15: AL always, NE never, ER only on error,
// SU only on success; an empty MSH-15 in enhanced mode counts as AL, so a sender is never left guessing.
// An inbound ACK is never acknowledged.

import { ERROR_CODE_TEXT, type HL7ErrorCode } from './error-codes.js';
import type { Delimiters, MessageHeader } from './header.js';

/** What happened to the message, independent of the acknowledgement mode. */
export type Outcome = 'accepted' | 'error' | 'rejected';

export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR';

export interface AckError {
  readonly code: HL7ErrorCode;
  /** Operator-facing text; must never contain message content. */
  readonly text: string;
  readonly location?: { segment: string; field?: number };
}

const DEFAULT_DELIMITERS: Delimiters = {
  field: '|',
  component: '^',
  repetition: '~',
  escape: '\\',
  subcomponent: '&',
  encodingCharacters: '^~\\&',
};

export function isEnhancedMode(header: MessageHeader): boolean {
  // A whitespace-only MSH-15/16 (real senders pad the MSH with a trailing space) is not a value.
  return header.acceptAckType.trim() !== '' || header.applicationAckType.trim() !== '';
}

export function isAcknowledgement(header: MessageHeader): boolean {
  return header.messageType === 'ACK';
}

/** The ACK code to send for this outcome, or null when the sender must get no response at all. */
export function ackCodeFor(header: MessageHeader | undefined, outcome: Outcome): AckCode | null {
  if (header && isAcknowledgement(header)) return null;
  if (!header || !isEnhancedMode(header)) {
    return outcome === 'accepted' ? 'AA' : outcome === 'error' ? 'AE' : 'AR';
  }
  const code: AckCode = outcome === 'accepted' ? 'CA' : outcome === 'error' ? 'CE' : 'CR';
  switch (header.acceptAckType.trim().toUpperCase()) {
    case 'NE':
      return null;
    case 'ER':
      return outcome === 'accepted' ? null : code;
    case 'SU':
      return outcome === 'accepted' ? code : null;
    default: // AL, or empty in enhanced mode
      return code;
  }
}

export interface AckOptions {
  readonly code: AckCode;
  readonly error?: AckError;
  /** MSH-10 of the ACK itself. */
  readonly ackControlId: string;
  readonly now?: Date;
}

/**
 * The ACK message bytes (no MLLP framing), CR-terminated segments. header is the inbound MSH when
 * one could be read; without it the ACK uses default delimiters and an empty MSA-2.
 */
export function buildAck(header: MessageHeader | undefined, options: AckOptions): Buffer {
  const d = header?.delimiters ?? DEFAULT_DELIMITERS;
  const f = d.field;
  const version = header?.versionField ?? '2.5';
  const versionId = header?.version ?? '2.5';
  const msh = [
    'MSH',
    d.encodingCharacters,
    header?.receivingApplication ?? '',
    header?.receivingFacility ?? '',
    header?.sendingApplication ?? '',
    header?.sendingFacility ?? '',
    hl7Timestamp(options.now ?? new Date()),
    '',
    ackMessageType(d, versionId, header?.triggerEvent ?? ''),
    options.ackControlId,
    header?.processingId || 'P',
    version,
  ];
  if (header && header.characterSet !== '') {
    msh.push('', '', '', '', '', header.characterSet);
  }
  const segments = [msh.join(f), ['MSA', options.code, header?.controlId ?? ''].join(f)];
  if (options.error) segments.push(errSegment(d, versionId, options.error));
  return Buffer.from(segments.join('\r') + '\r', 'latin1');
}

function ackMessageType(d: Delimiters, version: string, trigger: string): string {
  // v2.1-2.2 know only "ACK"; MSH-9.3 (message structure) exists from v2.3.1.
  const era = versionEra(version);
  if (trigger === '' || era === 'pre-2.3') return 'ACK';
  if (era === '2.3') return 'ACK' + d.component + trigger;
  return 'ACK' + d.component + trigger + d.component + 'ACK';
}

type VersionEra = 'pre-2.3' | '2.3' | '2.3.1-2.4' | '2.5+';
const eras = new Map<string, VersionEra>();

/** Which ACK layout a version gets; memoised, as every ACK asks and senders use few versions. */
function versionEra(version: string): VersionEra {
  let era = eras.get(version);
  if (era === undefined) {
    era =
      compareVersions(version, '2.3') < 0 ? 'pre-2.3' : compareVersions(version, '2.3.1') < 0 ? '2.3' : compareVersions(version, '2.5') < 0 ? '2.3.1-2.4' : '2.5+';
    if (eras.size < 256) eras.set(version, era);
  }
  return era;
}

function errSegment(d: Delimiters, version: string, error: AckError): string {
  const c = d.component;
  const text = escapeText(error.text, d);
  const codedError = [String(error.code), escapeText(ERROR_CODE_TEXT[error.code], d), 'HL70357'];
  const segment = error.location?.segment ?? '';
  const field = error.location?.field;
  if (versionEra(version) === '2.5+') {
    // ERR-1 is withdrawn from 2.5: ERR-2 location, ERR-3 code (CWE), ERR-4 severity, ERR-8 user message.
    const location = segment ? [segment, '1', field === undefined ? '' : String(field)].join(c) : '';
    return ['ERR', '', location, codedError.join(c), 'E', '', '', '', text].join(d.field);
  }
  // Up to 2.4: ERR-1 is an ELD: segment^sequence^field^code&text&table.
  // An MSH-2 of fewer than 4 characters declares no subcomponent separator: then the code goes alone.
  const s = d.encodingCharacters.length >= 4 ? d.subcomponent : undefined;
  const code = s === undefined ? String(error.code) : [String(error.code), text, 'HL70357'].join(s);
  const eld = [segment, segment ? '1' : '', field === undefined ? '' : String(field), code];
  return ['ERR', eld.join(c)].join(d.field);
}

/** Escapes our own text so it can never break the ACK's structure. */
function escapeText(text: string, d: Delimiters): string {
  const e = d.escape;
  let out = '';
  for (const ch of text) {
    if (ch === e) out += `${e}E${e}`;
    else if (ch === d.field) out += `${e}F${e}`;
    else if (ch === d.component) out += `${e}S${e}`;
    else if (ch === d.subcomponent) out += `${e}T${e}`;
    else if (ch === d.repetition) out += `${e}R${e}`;
    else if (ch === '\r' || ch === '\n') out += ' ';
    else out += ch;
  }
  return out;
}

/** Compares dotted HL7 version ids numerically ("2.3.1" < "2.5"); unparseable sorts as newest. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10));
  const pb = b.split('.').map((x) => Number.parseInt(x, 10));
  if (pa.some(Number.isNaN)) return 1;
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

let stampSecond = -1;
let stampHead = '';
let stampZone = '';

/** YYYYMMDDHHMMSS.sss±ZZZZ; the part down to the second is reused within that second. */
function hl7Timestamp(now: Date): string {
  const ms = now.getTime();
  const second = Math.floor(ms / 1000);
  if (second !== stampSecond) {
    const full = formatTimestamp(now);
    stampSecond = second;
    stampHead = full.slice(0, 14);
    stampZone = full.slice(18);
  }
  return `${stampHead}.${String(ms - second * 1000).padStart(3, '0')}${stampZone}`;
}

function formatTimestamp(now: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const offsetMin = -now.getTimezoneOffset();
  const sign = offsetMin >= 0 ? '+' : '-';
  const abs = Math.abs(offsetMin);
  return (
    `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}` +
    `${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}.${p(now.getMilliseconds(), 3)}` +
    `${sign}${p(Math.floor(abs / 60))}${p(abs % 60)}`
  );
}
