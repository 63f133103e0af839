// The contracts agent/ and control-plane/ share, and nothing else: the gRPC ingest service
// (ferry/v1/ingest.proto, loaded at run time), its generated TypeScript types (generated/, made by
// `npm run proto:gen`; a test fails when they drift from the .proto), and the constants both sides
// must agree on (metadata keys, limits).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/ingest.js';

export type { AgentFrame, AgentFrame__Output } from './generated/ferry/v1/AgentFrame.js';
export type { Ack, Ack__Output } from './generated/ferry/v1/Ack.js';
export type { Batch, Batch__Output } from './generated/ferry/v1/Batch.js';
export type { ControlFrame, ControlFrame__Output } from './generated/ferry/v1/ControlFrame.js';
export type { Envelope, Envelope__Output } from './generated/ferry/v1/Envelope.js';
export type { Hello, Hello__Output } from './generated/ferry/v1/Hello.js';
export type { IngestClient, IngestDefinition, IngestHandlers } from './generated/ferry/v1/Ingest.js';
export type { Metadata, Metadata__Output } from './generated/ferry/v1/Metadata.js';
export type { Welcome, Welcome__Output } from './generated/ferry/v1/Welcome.js';
export type { ProtoGrpcType };

/**
 * How the .proto is turned into JS objects. Must match scripts/proto-gen.js, which generates the
 * types from the same choices: camelCase field names (keepCase false), 64-bit integers as JS
 * numbers (seqs and millisecond times stay far below 2^53; the sender must keep them there), enums
 * as strings, defaults for absent fields, and a virtual `frame` field naming the oneof member set.
 */
export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The fully qualified service and its one method. */
export const INGEST_SERVICE = 'ferry.v1.Ingest';
export const INGEST_STREAM_METHOD = `/${INGEST_SERVICE}/Stream`;

/** gRPC metadata keys carrying the agent's credentials on every stream (never logged). */
export const AGENT_ID_METADATA_KEY = 'x-ferry-agent-id';
export const AGENT_SECRET_METADATA_KEY = 'x-ferry-agent-secret';

/** Length of Envelope.sha256. */
export const SHA256_BYTES = 32;

/**
 * Largest gRPC message either side accepts. A batch may exceed max_batch_bytes when it holds a
 * single envelope (one message can be up to the agent's max_message_bytes, 16 MiB by default), so
 * this leaves room for a large message plus framing.
 */
export const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Limits the control plane announces in Welcome unless configured otherwise. */
export const DEFAULT_INGEST_LIMITS = {
  maxBatchMessages: 512,
  maxBatchBytes: 4 * 1024 * 1024,
  maxInFlightBatches: 4,
} as const;

/** The .proto files, beside this module both in the sources and in dist/ (copied by the build). */
export const PROTO_ROOT = import.meta.dirname;
export const INGEST_PROTO_FILE = 'ferry/v1/ingest.proto';

let definition: PackageDefinition | undefined;

/** The ingest package definition (parsed once per process). */
export function loadIngestDefinition(): PackageDefinition {
  if (!definition) {
    const file = join(PROTO_ROOT, INGEST_PROTO_FILE);
    if (!existsSync(file)) throw new Error(`ingest contract ${file} is missing; rebuild with npm run build (it copies the .proto files into dist/)`);
    definition = loadSync(INGEST_PROTO_FILE, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  }
  return definition;
}

/** The ingest package as grpc-js objects, typed by the generated types: `.ferry.v1.Ingest.service` for a server, `new ….Ingest(address, creds)` for a client. */
export function loadIngestPackage(): ProtoGrpcType {
  return loadPackageDefinition(loadIngestDefinition()) as unknown as ProtoGrpcType;
}
