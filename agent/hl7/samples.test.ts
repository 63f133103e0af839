// Every file of the shared public corpus (../shared/hl7-samples) through split, parse and ACK.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadManifest, readSample } from '../../test/helpers/samples.js';
import { buildAck } from './ack.js';
import { byteStringToText, parseHeader } from './header.js';
import { isSingleMessage, splitMessages } from './split.js';

const manifest = loadManifest();
const NOW = new Date(2024, 5, 1, 12, 0, 0, 0);

describe('corpus manifest', () => {
  it('lists 74 files holding 234 messages, as SOURCES.md says', () => {
    expect(manifest.length).toBe(74);
    expect(manifest.reduce((n, e) => n + e.messages, 0)).toBe(234);
  });

  it('covers the edge features the tests rely on', () => {
    const files = new Set(manifest.map((e) => e.file));
    for (const f of [
      'adt-a24_v2.4_hapi-custom-separators.hl7',
      'bar-p01_v2.4-labelled_hapi-3-encoding-chars.hl7',
      'oru-r01_v2.5.1_prs-hex-escape-msh2-5chars.hl7',
      'adt-a40_v2.3.1_ipf-latin1-bytes.hl7',
      'multi-oml-oul_v2.5.1_hapi-blank-separated.batch.hl7',
      'fhs-bhs_v2.5_pyhl7-2batches.batch.hl7',
      'msh-only_v2.5.1_prs-all-msh-fields.hl7',
    ]) {
      expect(files.has(f), f).toBe(true);
    }
    expect(manifest.filter((e) => e.bom).length).toBeGreaterThanOrEqual(5);
    expect(new Set(manifest.map((e) => e.terminator))).toEqual(new Set(['CR', 'LF', 'CRLF', 'none']));
  });
});

describe.each(manifest.map((e) => [e.file, e] as const))('%s', (_file, entry) => {
  const bytes = readSample(entry.file);

  it('is the exact file the manifest describes (size, sha256, BOM)', () => {
    expect(bytes.length).toBe(entry.bytes);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256);
    expect(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf).toBe(entry.bom);
  });

  const split = splitMessages(bytes);

  it('splits into the manifest message count, with nothing stray, batch iff batch segments', () => {
    expect(split.messages.length).toBe(entry.messages);
    expect(split.strayOffset).toBeUndefined();
    expect(split.batch).toBe(entry.batchSegments.some((s) => ['FHS', 'BHS', 'BTS', 'FTS'].includes(s)));
    expect(isSingleMessage(bytes)).toBe(entry.messages === 1 && entry.batchSegments.length === 0);
  });

  it('message spans are exact, ordered, non-overlapping slices; what lies between them is only BOM, line breaks or batch segments', () => {
    let prev = 0;
    const gaps: string[] = [];
    for (const span of split.messages) {
      expect(span.start).toBeGreaterThanOrEqual(prev);
      expect(span.end).toBeGreaterThan(span.start);
      expect(span.end).toBeLessThanOrEqual(bytes.length);
      // A leading BOM is kept with the first message (stored as received).
      const msh = span.start === 0 && entry.bom ? 3 : 0;
      expect(bytes.subarray(span.start + msh, span.start + msh + 3).toString('latin1')).toBe('MSH');
      gaps.push(bytes.subarray(prev, span.start).toString('latin1'));
      prev = span.end;
    }
    gaps.push(bytes.subarray(prev).toString('latin1'));
    for (const gap of gaps) {
      const rest = gap
        .replace(/^\u00ef\u00bb\u00bf/, '')
        .split(/\r\n|\r|\n/)
        .filter((line) => line.trim() !== '');
      for (const line of rest) expect(['FHS', 'BHS', 'BTS', 'FTS']).toContain(line.slice(0, 3));
    }
    // Concatenating the spans gives a subsequence of the file: the bytes are never rewritten.
    const joined = Buffer.concat(split.messages.map((s) => bytes.subarray(s.start, s.end)));
    let at = 0;
    for (const s of split.messages) {
      const piece = bytes.subarray(s.start, s.end);
      expect(joined.subarray(at, at + piece.length).equals(piece)).toBe(true);
      expect(bytes.indexOf(piece, s.start)).toBe(s.start);
      at += piece.length;
    }
    expect(at).toBe(joined.length);
    // Every segment terminator inside a span is exactly as in the file (no normalisation).
    const kept = joined.toString('latin1');
    if (entry.terminator === 'LF') expect(kept.includes('\r')).toBe(false);
    if (entry.terminator === 'CR') expect(kept.includes('\n')).toBe(false);
    if (entry.terminator === 'CRLF') expect(kept.replace(/\r\n/g, '').match(/[\r\n]/)).toBeNull();
  });

  it('every message header parses; the first carries the manifest control id, type, version, delimiters and charset', () => {
    const results = split.messages.map((s) => parseHeader(bytes.subarray(s.start, s.end)));
    for (const r of results) {
      expect(r.header).toBeDefined();
      if (!r.ok) {
        // Only the corpus' two real messages with an empty MSH-10 may fail, and only for that.
        expect(entry.file).toBe('multi-oml-oul_v2.5.1_hapi-blank-separated.batch.hl7');
        expect(r.problem.code).toBe(101);
        expect(r.problem.location).toEqual({ segment: 'MSH', field: 10 });
        expect(r.header?.controlId).toBe('');
      }
    }
    expect(results.filter((r) => !r.ok).length).toBe(entry.file === 'multi-oml-oul_v2.5.1_hapi-blank-separated.batch.hl7' ? 2 : 0);
    const first = results[0]?.header;
    if (!first) throw new Error('no first header');
    expect(byteStringToText(first.controlId)).toBe(entry.controlId);
    expect(byteStringToText(first.messageTypeField)).toBe(entry.messageType);
    expect(byteStringToText(first.versionField).split(first.delimiters.component)[0]).toBe(entry.version.split('^')[0]);
    expect(first.delimiters.field).toBe(entry.fieldSeparator);
    expect(first.delimiters.encodingCharacters).toBe(entry['encodingChars(MSH-2)']);
    expect(byteStringToText(first.characterSet)).toBe(entry['charset(MSH-18)']);
    // Whole-file parse (BOM and all) gives the same first header; a batch file starts with FHS/BHS, not MSH.
    const whole = parseHeader(bytes);
    if (split.batch) expect(whole.ok ? 0 : whole.problem.code).toBe(101);
    else expect(whole.header?.controlId).toBe(first.controlId);
  });

  it('an ACK built for each message is well formed and echoes MSH-10 in MSA-2 byte for byte', () => {
    for (const span of split.messages) {
      const message = bytes.subarray(span.start, span.end);
      const h = parseHeader(message).header;
      if (!h) throw new Error('no header');
      const error = h.controlId === '' ? { code: 101 as const, text: 'MSH-10 message control id is empty', location: { segment: 'MSH', field: 10 } } : undefined;
      const ack = buildAck(h, { code: error ? 'AE' : 'AA', ackControlId: 'FERRYACK1', now: NOW, ...(error ? { error } : {}) });
      const parsed = parseHeader(ack);
      if (!parsed.ok) throw new Error(`ACK for ${entry.file} does not parse: ${parsed.problem.reason}`);
      const a = parsed.header;
      expect(a.messageType).toBe('ACK');
      expect(a.controlId).toBe('FERRYACK1');
      expect(a.delimiters).toEqual(h.delimiters);
      expect(a.sendingApplication).toBe(h.receivingApplication);
      expect(a.sendingFacility).toBe(h.receivingFacility);
      expect(a.receivingApplication).toBe(h.sendingApplication);
      expect(a.receivingFacility).toBe(h.sendingFacility);
      expect(a.versionField).toBe(h.versionField);
      expect(a.characterSet).toBe(h.characterSet);
      const text = ack.toString('latin1');
      expect(text.endsWith('\r')).toBe(true);
      expect(text.includes('\n')).toBe(false);
      const segments = text.slice(0, -1).split('\r');
      expect(segments.length).toBe(error ? 3 : 2);
      expect(segments[1]?.split(h.delimiters.field)[0]).toBe('MSA');
      // MSA-2 is the inbound MSH-10's bytes, exactly.
      const msaPrefix = Buffer.from(`\rMSA${h.delimiters.field}${error ? 'AE' : 'AA'}${h.delimiters.field}`, 'latin1');
      const at = ack.indexOf(msaPrefix) + msaPrefix.length;
      const raw = Buffer.from(h.controlId, 'latin1');
      expect(ack.subarray(at, at + raw.length).equals(raw)).toBe(true);
      expect(ack[at + raw.length]).toBe(0x0d);
      // And those bytes are the ones in the file.
      expect(message.indexOf(Buffer.concat([Buffer.from(h.delimiters.field, 'latin1'), raw, Buffer.from(h.delimiters.field, 'latin1')]))).toBeGreaterThan(0);
    }
  });
});
