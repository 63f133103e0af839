// Original file: proto/ferry/v1/ingest.proto

import type { Long } from '@grpc/proto-loader';

export interface Welcome {
  /**
   * Highest seq committed for this agent and buffer id; 0 if none. Resume after it.
   */
  'committedSeq'?: (number | string | Long);
  'maxBatchMessages'?: (number);
  'maxBatchBytes'?: (number);
  'maxInFlightBatches'?: (number);
}

export interface Welcome__Output {
  /**
   * Highest seq committed for this agent and buffer id; 0 if none. Resume after it.
   */
  'committedSeq': (number);
  'maxBatchMessages': (number);
  'maxBatchBytes': (number);
  'maxInFlightBatches': (number);
}
