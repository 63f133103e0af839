import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Ack as _ferry_v1_Ack, Ack__Output as _ferry_v1_Ack__Output } from './ferry/v1/Ack.js';
import type { AgentFrame as _ferry_v1_AgentFrame, AgentFrame__Output as _ferry_v1_AgentFrame__Output } from './ferry/v1/AgentFrame.js';
import type { Batch as _ferry_v1_Batch, Batch__Output as _ferry_v1_Batch__Output } from './ferry/v1/Batch.js';
import type { ControlFrame as _ferry_v1_ControlFrame, ControlFrame__Output as _ferry_v1_ControlFrame__Output } from './ferry/v1/ControlFrame.js';
import type { Envelope as _ferry_v1_Envelope, Envelope__Output as _ferry_v1_Envelope__Output } from './ferry/v1/Envelope.js';
import type { Hello as _ferry_v1_Hello, Hello__Output as _ferry_v1_Hello__Output } from './ferry/v1/Hello.js';
import type { IngestClient as _ferry_v1_IngestClient, IngestDefinition as _ferry_v1_IngestDefinition } from './ferry/v1/Ingest.js';
import type { Metadata as _ferry_v1_Metadata, Metadata__Output as _ferry_v1_Metadata__Output } from './ferry/v1/Metadata.js';
import type { Welcome as _ferry_v1_Welcome, Welcome__Output as _ferry_v1_Welcome__Output } from './ferry/v1/Welcome.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  ferry: {
    v1: {
      Ack: MessageTypeDefinition<_ferry_v1_Ack, _ferry_v1_Ack__Output>
      AgentFrame: MessageTypeDefinition<_ferry_v1_AgentFrame, _ferry_v1_AgentFrame__Output>
      Batch: MessageTypeDefinition<_ferry_v1_Batch, _ferry_v1_Batch__Output>
      ControlFrame: MessageTypeDefinition<_ferry_v1_ControlFrame, _ferry_v1_ControlFrame__Output>
      Envelope: MessageTypeDefinition<_ferry_v1_Envelope, _ferry_v1_Envelope__Output>
      Hello: MessageTypeDefinition<_ferry_v1_Hello, _ferry_v1_Hello__Output>
      Ingest: SubtypeConstructor<typeof grpc.Client, _ferry_v1_IngestClient> & { service: _ferry_v1_IngestDefinition }
      Metadata: MessageTypeDefinition<_ferry_v1_Metadata, _ferry_v1_Metadata__Output>
      Welcome: MessageTypeDefinition<_ferry_v1_Welcome, _ferry_v1_Welcome__Output>
    }
  }
}

