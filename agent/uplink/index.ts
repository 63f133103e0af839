// The uplink: moves buffered messages to the control plane over one gRPC stream
// (ferry.v1.Ingest/Stream, contract in proto/): batches in seq order, several in flight, rows
// deleted only once an Ack covers them, resume from the Welcome after any reconnect, full-jitter
// backoff, keepalive plus an Ack deadline so a silent network drop is noticed.

export { Backoff, type BackoffOptions } from './backoff.js';
export { hostOf, planChannel, type ChannelPlan } from './channel.js';
export { takeWithin, type SessionEnd, type UplinkBuffer } from './session.js';
export {
  Uplink,
  disabledUplinkStatus,
  pendingOf,
  type UplinkDeps,
  type UplinkHealth,
  type UplinkMetrics,
  type UplinkSettings,
  type UplinkState,
  type UplinkStatus,
} from './uplink.js';
