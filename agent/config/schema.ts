// The agent's local configuration file. The parts a fleet policy may also set (sources, buffer
// size, uplink, log level) are the schemas in proto/policy, so the file and a policy accept exactly
// the same values; what stays local (data_dir, admin, key file, shutdown) is defined here.

import { z } from 'zod';
import { listenAddress, logLevelSchema, secs, size, sourcesSchema, uplinkSchema } from '../../proto/policy/index.js';

export { parseListen, parseSize, mllpSourceSchema, fileDropSourceSchema, type MllpSourceConfig, type FileDropSourceConfig, type SourceConfig, type UplinkConfig } from '../../proto/policy/index.js';

/**
 * The MQTT fleet client (local only: a policy cannot set it). The broker URL and the agent's
 * credentials come from DATA_DIR/credentials.json (`ferry-agent enroll`).
 */
export const fleetSchema = z
  .object({
    /** false: no fleet client; the agent runs its local file (and any cached policy) only. */
    enabled: z.boolean().default(true),
    /** Status is republished at least this often; the control plane counts an agent offline when it is late. */
    heartbeat_secs: secs('heartbeat_secs').default(15),
    /** Counters are published on the telemetry topic this often. */
    telemetry_secs: secs('telemetry_secs').default(60),
    /** MQTT keepalive: the broker fires the last will (offline) after about 1.5 times this much silence. */
    keepalive_secs: z.number().int().min(1).max(65535).default(30),
    /** How long one connection attempt may take. */
    connect_timeout_secs: secs('connect_timeout_secs').default(10),
    /** First reconnect window: each retry waits a random time within it; it doubles per failed attempt up to 32 times this, at most 60 s (fleet/backoff.ts). */
    reconnect_delay_secs: secs('reconnect_delay_secs').default(2),
    /** CA bundle that signed the broker's certificate (mqtts:// with a private CA); default: the system roots. */
    ca_file: z.string().min(1).optional(),
  })
  .strict();

export const agentConfigSchema = z
  .object({
    data_dir: z.string().min(1).default('/var/lib/ferry-agent'),
    log_level: logLevelSchema.default('info'),
    admin: z
      .object({ listen: listenAddress('127.0.0.1:9575').default('127.0.0.1:9575') })
      .strict()
      .default({ listen: '127.0.0.1:9575' }),
    buffer: z
      .object({
        max_bytes: size('max_bytes').default(10 * 1024 ** 3),
        /** Defaults to DATA_DIR/buffer-keys.json. */
        key_file: z.string().min(1).optional(),
      })
      .strict()
      .default({ max_bytes: 10 * 1024 ** 3 }),
    sources: sourcesSchema.default([]),
    uplink: uplinkSchema.prefault({}),
    shutdown_timeout_secs: secs('shutdown_timeout_secs').default(15),
    fleet: fleetSchema.prefault({}),
  })
  .strict();

export type AgentConfig = z.output<typeof agentConfigSchema>;
export type FleetConfig = z.output<typeof fleetSchema>;
