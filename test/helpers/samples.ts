// The shared corpus of real HL7 v2 messages (../shared/hl7-samples) and its manifest.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './agent-process.js';

export const SAMPLES_DIR = join(REPO_ROOT, '..', 'shared', 'hl7-samples');

export interface SampleEntry {
  readonly file: string;
  readonly messageType: string;
  readonly version: string;
  readonly controlId: string;
  readonly messages: number;
  readonly terminator: 'CR' | 'LF' | 'CRLF' | 'none';
  readonly fieldSeparator: string;
  readonly 'encodingChars(MSH-2)': string;
  readonly 'charset(MSH-18)': string;
  readonly bom: boolean;
  readonly bytes: number;
  readonly sha256: string;
  readonly batchSegments: readonly string[];
}

export function loadManifest(): SampleEntry[] {
  return JSON.parse(readFileSync(join(SAMPLES_DIR, 'manifest.json'), 'utf8')) as SampleEntry[];
}

export function readSample(file: string): Buffer {
  return readFileSync(join(SAMPLES_DIR, file));
}
