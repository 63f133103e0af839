// Original file: proto/ferry/v1/ingest.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentFrame as _ferry_v1_AgentFrame, AgentFrame__Output as _ferry_v1_AgentFrame__Output } from '../../ferry/v1/AgentFrame.js';
import type { ControlFrame as _ferry_v1_ControlFrame, ControlFrame__Output as _ferry_v1_ControlFrame__Output } from '../../ferry/v1/ControlFrame.js';

export interface IngestClient extends grpc.Client {
  Stream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_v1_AgentFrame, _ferry_v1_ControlFrame__Output>;
  Stream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_v1_AgentFrame, _ferry_v1_ControlFrame__Output>;
  stream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_v1_AgentFrame, _ferry_v1_ControlFrame__Output>;
  stream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_ferry_v1_AgentFrame, _ferry_v1_ControlFrame__Output>;
  
}

export interface IngestHandlers extends grpc.UntypedServiceImplementation {
  Stream: grpc.handleBidiStreamingCall<_ferry_v1_AgentFrame__Output, _ferry_v1_ControlFrame>;
  
}

export interface IngestDefinition extends grpc.ServiceDefinition {
  Stream: MethodDefinition<_ferry_v1_AgentFrame, _ferry_v1_ControlFrame, _ferry_v1_AgentFrame__Output, _ferry_v1_ControlFrame__Output>
}
