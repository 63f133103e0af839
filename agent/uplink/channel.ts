// Where the uplink connects and how: the gRPC target from the credentials, TLS unless the control
// plane is on this machine over plain http/grpc, and the keepalive settings that make a dead path
// visible (a ping unanswered within keepalive_timeout closes the connection).

import { readFileSync } from 'node:fs';
import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { MAX_GRPC_MESSAGE_BYTES, loadIngestPackage, type IngestClient } from '../../proto/index.js';
import { isLoopback } from '../../proto/policy/index.js';
import type { UplinkConfig } from '../config/index.js';

export interface ChannelPlan {
  /** host:port for grpc-js. */
  readonly target: string;
  readonly tls: boolean;
}

/**
 * The target and whether to use TLS. `grpcTarget` is `host:port` (or a grpc://, grpcs://, http://,
 * https:// URL); the scheme of `controlPlaneUrl` (or of the target) asks for TLS with https/grpcs,
 * and a host that is not loopback always gets TLS (the security baseline: TLS whenever the peer is
 * not on this machine).
 */
export function planChannel(controlPlaneUrl: string, grpcTarget: string): ChannelPlan {
  let target = grpcTarget.trim();
  let secureScheme = /^(https|grpcs):/i.test(controlPlaneUrl.trim());
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/]+)\/?$/i.exec(target);
  if (m) {
    secureScheme ||= /^(https|grpcs)$/i.test(m[1]!);
    target = m[2]!;
  }
  return { target, tls: secureScheme || !isLoopback(hostOf(target)) };
}

export function hostOf(target: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(target);
  if (bracketed) return bracketed[1]!;
  const i = target.lastIndexOf(':');
  return i < 0 || target.indexOf(':') !== i ? target : target.slice(0, i);
}

export function channelCredentials(plan: ChannelPlan, caFile: string | undefined): ChannelCredentials {
  if (!plan.tls) return credentials.createInsecure();
  return credentials.createSsl(caFile ? readFileSync(caFile) : null);
}

export function channelOptions(config: UplinkConfig): ChannelOptions {
  return {
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': Math.round(config.keepalive_time_secs * 1000),
    'grpc.keepalive_timeout_ms': Math.round(config.keepalive_timeout_secs * 1000),
    'grpc.keepalive_permit_without_calls': 1,
    // Keep pinging while the stream waits for Acks with nothing new to send.
    'grpc.http2.max_pings_without_data': 0,
    // Each attempt builds its own channel (see Uplink); grpc-js's own reconnect backoff stays out of the way.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1000,
  };
}

/** A fresh client (and channel): a connection given up on is never reused by the next attempt. */
export function createIngestClient(plan: ChannelPlan, creds: ChannelCredentials, options: ChannelOptions): IngestClient {
  const Ingest = loadIngestPackage().ferry.v1.Ingest;
  return new Ingest(plan.target, creds, options);
}
