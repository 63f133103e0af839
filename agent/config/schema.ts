// The agent's local configuration file. The parts a fleet policy may also set (sources, buffer
// size, uplink, log level) are the schemas in proto/policy, so the file and a policy accept exactly
// the same values; what stays local (data_dir, admin, key file, shutdown) is defined here.

import { z } from 'zod';
import { listenAddress, logLevelSchema, secs, size, sourcesSchema, uplinkSchema } from '../../proto/policy/index.js';

export { parseListen, parseSize, mllpSourceSchema, fileDropSourceSchema, type MllpSourceConfig, type FileDropSourceConfig, type SourceConfig, type UplinkConfig } from '../../proto/policy/index.js';

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
  })
  .strict();

export type AgentConfig = z.output<typeof agentConfigSchema>;
