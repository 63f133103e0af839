// Original file: proto/ferry/v1/ingest.proto

import type { Metadata as _ferry_v1_Metadata, Metadata__Output as _ferry_v1_Metadata__Output } from '../../ferry/v1/Metadata.js';
import type { Long } from '@grpc/proto-loader';

export interface Envelope {
  'seq'?: (number | string | Long);
  'sourceId'?: (string);
  /**
   * Milliseconds since the Unix epoch, when the agent received the message.
   */
  'receivedAtMs'?: (number | string | Long);
  /**
   * The message exactly as received.
   */
  'payload'?: (Buffer | Uint8Array | string);
  'metadata'?: (_ferry_v1_Metadata | null);
  /**
   * sha256 of payload (32 bytes); the control plane verifies it before storing anything.
   */
  'sha256'?: (Buffer | Uint8Array | string);
}

export interface Envelope__Output {
  'seq': (number);
  'sourceId': (string);
  /**
   * Milliseconds since the Unix epoch, when the agent received the message.
   */
  'receivedAtMs': (number);
  /**
   * The message exactly as received.
   */
  'payload': (Buffer);
  'metadata': (_ferry_v1_Metadata__Output | null);
  /**
   * sha256 of payload (32 bytes); the control plane verifies it before storing anything.
   */
  'sha256': (Buffer);
}
