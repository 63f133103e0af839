// The control plane's configuration: one zod schema is the type, the defaults and the validation.
// Keys are snake_case (DESIGN.md); command-line flags override the file.

import { z } from 'zod';
import { parseListen } from '../../proto/policy/index.js';

export { parseListen };

const listenAddress = z.string().refine((v) => parseListen(v) !== undefined, { message: 'must be host:port, e.g. 0.0.0.0:8080 or [::]:8080' });

export const controlPlaneConfigSchema = z
  .object({
    data_dir: z.string().min(1).default('/var/lib/ferry-control-plane'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    http: z
      .object({ listen: listenAddress.default('0.0.0.0:8080') })
      .strict()
      .default({ listen: '0.0.0.0:8080' }),
    grpc: z
      .object({ listen: listenAddress.default('0.0.0.0:50051') })
      .strict()
      .default({ listen: '0.0.0.0:50051' }),
    /** Accepted now, used by the fleet bus (next milestone). */
    mqtt: z
      .object({
        listen: listenAddress.optional(),
        url: z.string().regex(/^(mqtts?|wss?):\/\/\S+$/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL').optional(),
      })
      .strict()
      .refine((m) => m.listen === undefined || m.url === undefined, { message: 'set mqtt.listen (embedded broker) or mqtt.url (external broker), not both' })
      .default({}),
    /** Only sqlite today; postgres comes later. */
    store: z
      .object({ type: z.literal('sqlite').default('sqlite') })
      .strict()
      .default({ type: 'sqlite' }),
    shutdown_timeout_secs: z.number().positive().default(15),
  })
  .strict();

export type ControlPlaneConfig = z.output<typeof controlPlaneConfigSchema>;
