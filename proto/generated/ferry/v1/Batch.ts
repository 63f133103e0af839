// Original file: proto/ferry/v1/ingest.proto

import type { Envelope as _ferry_v1_Envelope, Envelope__Output as _ferry_v1_Envelope__Output } from '../../ferry/v1/Envelope.js';

export interface Batch {
  /**
   * Strictly increasing seq within one batch.
   */
  'envelopes'?: (_ferry_v1_Envelope)[];
}

export interface Batch__Output {
  /**
   * Strictly increasing seq within one batch.
   */
  'envelopes': (_ferry_v1_Envelope__Output)[];
}
