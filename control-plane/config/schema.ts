// The control plane's configuration: one zod schema is the type, the defaults and the validation.
// Keys are snake_case (DESIGN.md); command-line flags override the file.

import { z } from 'zod';
import { parseListen } from '../../proto/policy/index.js';

export { parseListen };

const mqttUrl = z.string().regex(/^(mqtts?|wss?):\/\/\S+$/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL');

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
    /**
     * TLS for the HTTP API and the gRPC ingest (and the embedded MQTT broker unless mqtt.tls names
     * another pair): needed whenever agents are not on this machine (`ferry-control-plane make-certs`
     * makes a private CA and a certificate for trials).
     */
    tls: z.object({ cert_file: z.string().min(1), key_file: z.string().min(1) }).strict().optional(),
    /**
     * The MQTT fleet bus: the embedded broker (default, on `listen`, 0.0.0.0:1883 when unset) or an
     * external broker at `url`. Defaults are applied in fleet/broker/options.ts.
     */
    mqtt: z
      .object({
        /** Embedded broker: where it listens (default 0.0.0.0:1883; 8883 is the TLS convention). */
        listen: listenAddress.optional(),
        /** Embedded broker: TLS on the listener (needed whenever agents are not on loopback). */
        tls: z.object({ cert_file: z.string().min(1), key_file: z.string().min(1) }).strict().optional(),
        /** External broker: the control plane connects here with its own credentials. */
        url: mqttUrl.optional(),
        /** What agents are told in the enrollment answer; default: the request's host and the embedded port, or `url`. */
        advertise_url: mqttUrl.optional(),
        /** External broker: the control plane's user name; its password is read from password_file (never a flag). */
        username: z.string().min(1).optional(),
        password_file: z.string().min(1).optional(),
        /** External broker: CA bundle to verify an mqtts:// broker. */
        ca_file: z.string().min(1).optional(),
        /** Largest MQTT packet accepted from a client (embedded); policies and statuses are small. */
        max_packet_bytes: z.number().int().min(1024).max(268435455).optional(),
        /** A connection that sends no CONNECT within this time is dropped (embedded). */
        connect_timeout_secs: z.number().positive().optional(),
        /** External Mosquitto: files the control plane keeps up to date so Mosquitto enforces Ferry's rules. */
        mosquitto: z
          .object({ password_file: z.string().min(1), acl_file: z.string().min(1), pid_file: z.string().min(1).optional() })
          .strict()
          .optional(),
      })
      .strict()
      .superRefine((m, ctx) => {
        const external = m.url !== undefined;
        if (external && m.listen !== undefined) ctx.addIssue({ code: 'custom', message: 'set mqtt.listen (embedded broker) or mqtt.url (external broker), not both' });
        if (external && m.tls !== undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls is for the embedded broker; for an external broker use an mqtts:// url and ca_file' });
        for (const key of ['username', 'password_file', 'ca_file', 'mosquitto'] as const) {
          if (!external && m[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `${key} is for an external broker; set mqtt.url too` });
        }
        if ((m.username === undefined) !== (m.password_file === undefined)) ctx.addIssue({ code: 'custom', path: ['password_file'], message: 'username and password_file go together' });
        if (m.mosquitto !== undefined && m.username === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: 'mosquitto files need the control plane\'s own username and password_file' });
      })
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
