// gRPC ingest: the control plane's end of the agents' uplink (ferry.v1.Ingest/Stream). Each stream
// authenticates an agent, says where to resume (Welcome), commits each batch to the store, and only
// then acknowledges it (Ack), in order.

export {
  IngestServer,
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  type ComponentHealth,
  type IngestCounters,
  type IngestServerConfig,
  type IngestServerDeps,
} from './server.js';
export type { IngestLimits } from './session.js';
