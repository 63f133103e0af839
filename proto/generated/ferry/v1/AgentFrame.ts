// Original file: proto/ferry/v1/ingest.proto

import type { Hello as _ferry_v1_Hello, Hello__Output as _ferry_v1_Hello__Output } from '../../ferry/v1/Hello.js';
import type { Batch as _ferry_v1_Batch, Batch__Output as _ferry_v1_Batch__Output } from '../../ferry/v1/Batch.js';

export interface AgentFrame {
  'hello'?: (_ferry_v1_Hello | null);
  'batch'?: (_ferry_v1_Batch | null);
  'frame'?: "hello"|"batch";
}

export interface AgentFrame__Output {
  'hello'?: (_ferry_v1_Hello__Output | null);
  'batch'?: (_ferry_v1_Batch__Output | null);
  'frame'?: "hello"|"batch";
}
