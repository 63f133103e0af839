// Splits a byte block (an MLLP frame or a dropped file) into its HL7 messages.
//
// A block may hold one message, several (CR, LF or CRLF terminators, blank lines between them), or
// FHS/BHS batches whose header and trailer segments are not part of any message. Each message is a
// slice of the input: bytes are never rewritten.

import { skipBom } from './header.js';

export interface MessageSpan {
  /** Offset of the message's MSH segment (0 for a first message preceded by a UTF-8 BOM). */
  readonly start: number;
  /** Offset just past its last non-blank segment and that segment's terminator. */
  readonly end: number;
}

export interface SplitResult {
  readonly messages: readonly MessageSpan[];
  /** True when the block held FHS/BHS/BTS/FTS segments. */
  readonly batch: boolean;
  /** Offset of the first non-blank content that belongs to no message (e.g. before any MSH), if any. */
  readonly strayOffset?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const BATCH_SEGMENTS = new Set(['FHS', 'BHS', 'BTS', 'FTS']);

function segmentName(bytes: Uint8Array, at: number): string {
  if (at + 3 > bytes.length) return '';
  return String.fromCharCode(bytes[at] ?? 0, bytes[at + 1] ?? 0, bytes[at + 2] ?? 0);
}

/** True when a segment starting at `at` is a header (its name is followed by a separator, not a letter). */
function isHeaderSegment(bytes: Uint8Array, at: number, name: string): boolean {
  if (segmentName(bytes, at) !== name) return false;
  const sep = bytes[at + 3];
  return sep !== undefined && sep !== CR && sep !== LF && !isAlphaNumeric(sep);
}

function isAlphaNumeric(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}

/**
 * Fast path for the common MLLP case: one message, starting with MSH, no other MSH or batch
 * segment after it. Scanning for "\rMSH" / "\nMSH" with indexOf is native and cheap.
 */
export function isSingleMessage(bytes: Buffer): boolean {
  const start = skipBom(bytes);
  if (!isHeaderSegment(bytes, start, 'MSH')) return false;
  return bytes.indexOf('\rMSH', start, 'latin1') === -1 && bytes.indexOf('\nMSH', start, 'latin1') === -1 && !hasBatchTrailer(bytes, start);
}

function hasBatchTrailer(bytes: Buffer, start: number): boolean {
  return (
    bytes.indexOf('\rBTS', start, 'latin1') !== -1 ||
    bytes.indexOf('\nBTS', start, 'latin1') !== -1 ||
    bytes.indexOf('\rFTS', start, 'latin1') !== -1 ||
    bytes.indexOf('\nFTS', start, 'latin1') !== -1
  );
}

export function splitMessages(bytes: Buffer): SplitResult {
  const messages: MessageSpan[] = [];
  let batch = false;
  let strayOffset: number | undefined;
  let current: { start: number; end: number } | undefined;

  const close = (): void => {
    if (current) messages.push({ start: current.start, end: current.end });
    current = undefined;
  };

  // The next CR and LF at or after pos, found with native indexOf and kept until pos passes them
  // (-1: none left), so a file with only one kind of terminator is still scanned once, not per line.
  let nextCr = -2;
  let nextLf = -2;
  let pos = skipBom(bytes);
  while (pos < bytes.length) {
    // Find this segment's end and the start of the next one (CR, LF or CRLF).
    if (nextCr !== -1 && nextCr < pos) nextCr = bytes.indexOf(CR, pos);
    if (nextLf !== -1 && nextLf < pos) nextLf = bytes.indexOf(LF, pos);
    const lineEnd = Math.min(nextCr === -1 ? bytes.length : nextCr, nextLf === -1 ? bytes.length : nextLf);
    let next = lineEnd;
    if (bytes[next] === CR) next++;
    if (bytes[next] === LF) next++;
    const blank = lineEnd === pos || isWhitespaceOnly(bytes, pos, lineEnd);

    if (!blank) {
      if (isHeaderSegment(bytes, pos, 'MSH')) {
        close();
        current = { start: pos, end: next };
      } else if (BATCH_SEGMENTS.has(segmentName(bytes, pos)) && isHeaderSegment(bytes, pos, segmentName(bytes, pos))) {
        close();
        batch = true;
      } else if (current) {
        current.end = next;
      } else if (strayOffset === undefined) {
        strayOffset = pos;
      }
    }
    pos = next === lineEnd ? lineEnd + 1 : next;
  }
  close();
  // A byte-order mark belongs to the first message: bytes are stored as received.
  const first = messages[0];
  if (first && first.start === 3 && skipBom(bytes) === 3) messages[0] = { start: 0, end: first.end };
  return strayOffset === undefined ? { messages, batch } : { messages, batch, strayOffset };
}

function isWhitespaceOnly(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09) return false;
  }
  return true;
}
