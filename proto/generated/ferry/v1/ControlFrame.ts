// Original file: proto/ferry/v1/ingest.proto

import type { Welcome as _ferry_v1_Welcome, Welcome__Output as _ferry_v1_Welcome__Output } from '../../ferry/v1/Welcome.js';
import type { Ack as _ferry_v1_Ack, Ack__Output as _ferry_v1_Ack__Output } from '../../ferry/v1/Ack.js';

export interface ControlFrame {
  'welcome'?: (_ferry_v1_Welcome | null);
  'ack'?: (_ferry_v1_Ack | null);
  'frame'?: "welcome"|"ack";
}

export interface ControlFrame__Output {
  'welcome'?: (_ferry_v1_Welcome__Output | null);
  'ack'?: (_ferry_v1_Ack__Output | null);
  'frame'?: "welcome"|"ack";
}
