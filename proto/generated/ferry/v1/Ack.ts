// Original file: proto/ferry/v1/ingest.proto

import type { Long } from '@grpc/proto-loader';

export interface Ack {
  /**
   * Every envelope of this agent and buffer with seq <= committed_seq is durably stored.
   */
  'committedSeq'?: (number | string | Long);
}

export interface Ack__Output {
  /**
   * Every envelope of this agent and buffer with seq <= committed_seq is durably stored.
   */
  'committedSeq': (number);
}
