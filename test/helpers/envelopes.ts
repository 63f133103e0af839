// Envelopes (the uplink's unit: seq, source, received time, payload, metadata, sha256) built from
// the real sample corpus or from synthetic messages, for store and ingest tests. Plain objects:
// test/ may not import control-plane/ or agent/, and both sides' types accept this shape.

import { createHash } from 'node:crypto';
import { loadManifest, readSample } from './samples.js';
import { realisticMessage } from './messages.js';

export interface TestEnvelope {
  readonly seq: number;
  readonly sourceId: string;
  readonly receivedAtMs: number;
  readonly payload: Buffer;
  readonly sha256: Buffer;
  readonly metadata: {
    readonly messageType: string;
    readonly triggerEvent: string;
    readonly controlId: string;
    readonly sendingApplication: string;
    readonly sendingFacility: string;
    readonly version: string;
  };
}

export function sha256(payload: Buffer): Buffer {
  return createHash('sha256').update(payload).digest();
}

interface CorpusItem {
  readonly payload: Buffer;
  readonly messageType: string;
  readonly triggerEvent: string;
  readonly controlId: string;
  readonly version: string;
}

let corpus: CorpusItem[] | undefined;

/** Every file of ../shared/hl7-samples, as the exact bytes (a file with several messages stays one payload). */
export function sampleCorpus(): readonly CorpusItem[] {
  corpus ??= loadManifest().map((entry) => {
    const [messageType = '', triggerEvent = ''] = entry.messageType.split('^');
    return { payload: readSample(entry.file), messageType, triggerEvent, controlId: entry.controlId, version: entry.version };
  });
  return corpus;
}

/**
 * `count` envelopes with seqs firstSeq, firstSeq+1, …, cycling through the sample corpus (so the
 * same bytes recur; each envelope's seq still makes it unique), one source unless `sources` says.
 */
export function sampleEnvelopes(firstSeq: number, count: number, options: { sources?: readonly string[]; receivedAtMs?: number } = {}): TestEnvelope[] {
  const items = sampleCorpus();
  const sources = options.sources ?? ['src-a'];
  const base = options.receivedAtMs ?? 1_764_000_000_000;
  return Array.from({ length: count }, (_, i) => {
    const seq = firstSeq + i;
    const item = items[(seq - 1) % items.length]!;
    return {
      seq,
      sourceId: sources[(seq - 1) % sources.length]!,
      receivedAtMs: base + seq,
      payload: item.payload,
      sha256: sha256(item.payload),
      metadata: { messageType: item.messageType, triggerEvent: item.triggerEvent, controlId: item.controlId, sendingApplication: 'APP', sendingFacility: 'FAC', version: item.version },
    };
  });
}

/** A synthetic ADT/ORU envelope whose patient name can carry a canary string. */
export function syntheticEnvelope(seq: number, options: { sourceId?: string; patientName?: string; receivedAtMs?: number } = {}): TestEnvelope {
  const payload = realisticMessage('E', seq, options.patientName === undefined ? {} : { patientName: options.patientName });
  const isAdt = seq % 2 === 0;
  return {
    seq,
    sourceId: options.sourceId ?? 'src-a',
    receivedAtMs: options.receivedAtMs ?? 1_764_000_000_000 + seq,
    payload,
    sha256: sha256(payload),
    metadata: {
      messageType: isAdt ? 'ADT' : 'ORU',
      triggerEvent: isAdt ? 'A01' : 'R01',
      controlId: `E${String(seq).padStart(10, '0')}`,
      sendingApplication: isAdt ? 'EPIC' : 'LIS',
      sendingFacility: 'CITYHOSP',
      version: '2.5.1',
    },
  };
}
