// The agent's configuration: one zod schema is the type, the defaults and the validation.
// Keys are snake_case and spell their units (DESIGN.md); sizes accept "16MiB"-style strings.

import { isIP } from 'node:net';
import { z } from 'zod';

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses "10GiB", "16 MiB", "1500" (bytes) or a number; undefined when it is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[2] || 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.floor(Number(m[1]) * unit);
}

const size = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined || n <= 0) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a positive size such as 1500, "64KiB", "16MiB" or "10GiB"` });
      return z.NEVER;
    }
    return n;
  });

/** "host:port" with a port 0-65535; IPv6 hosts in brackets. */
const listenAddress = z.string().refine((v) => parseListen(v) !== undefined, { message: 'must be host:port, e.g. 0.0.0.0:2575 or [::]:2575' });

export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

const cidr = z.string().refine(
  (v) => {
    const [addr, bits, ...rest] = v.split('/');
    if (rest.length > 0 || !addr || isIP(addr) === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return Number.isInteger(n) && n >= 0 && n <= (isIP(addr) === 4 ? 32 : 128);
  },
  { message: 'must be an IP address or CIDR block, e.g. 10.1.0.0/16' },
);

const secs = (what: string) => z.number({ message: `${what} must be a number of seconds` }).positive();

export const tlsSchema = z
  .object({
    cert_file: z.string().min(1),
    key_file: z.string().min(1),
    /** CA bundle for client certificates; with require_client_cert makes the listener mTLS. */
    ca_file: z.string().min(1).optional(),
    require_client_cert: z.boolean().default(false),
  })
  .strict()
  .refine((t) => !t.require_client_cert || t.ca_file !== undefined, { message: 'require_client_cert needs ca_file', path: ['ca_file'] });

export const mllpSourceSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, ".", "_" or "-"'),
    type: z.literal('mllp'),
    listen: listenAddress.default('0.0.0.0:2575'),
    max_message_bytes: size('max_message_bytes').default(16 * 1024 * 1024),
    max_connections: z.number().int().positive().default(256),
    partial_frame_timeout_secs: secs('partial_frame_timeout_secs').default(60),
    idle_timeout_secs: secs('idle_timeout_secs').default(600),
    dedupe_window_secs: z.number().min(0).default(300),
    /** Frames one connection may have awaiting their commit before reading pauses (pipelining depth). */
    max_in_flight_per_connection: z.number().int().positive().default(1024),
    allow_ips: z.array(cidr).optional(),
    tls: tlsSchema.optional(),
  })
  .strict();

export const sourceSchema = z.discriminatedUnion('type', [mllpSourceSchema]);

/** The gRPC uplink to the control plane (where and who come from DATA_DIR/credentials.json, made by `enroll`). */
export const uplinkSchema = z
  .object({
    /** false: keep everything in the buffer even when the agent is enrolled. */
    enabled: z.boolean().default(true),
    retry_initial_delay_secs: secs('retry_initial_delay_secs').default(0.25),
    retry_max_delay_secs: secs('retry_max_delay_secs').default(30),
    /** With batches in flight and no Ack for this long, the stream is presumed dead and replaced. */
    ack_timeout_secs: secs('ack_timeout_secs').default(30),
    /** gRPC keepalive: ping after this much silence, drop the connection when the ping goes unanswered. */
    keepalive_time_secs: secs('keepalive_time_secs').default(30),
    keepalive_timeout_secs: secs('keepalive_timeout_secs').default(10),
    /** CA bundle that signed the control plane's gRPC certificate (a private CA); default: the system roots. */
    ca_file: z.string().min(1).optional(),
  })
  .strict()
  .refine((u) => u.retry_initial_delay_secs <= u.retry_max_delay_secs, {
    message: 'retry_initial_delay_secs must not exceed retry_max_delay_secs',
    path: ['retry_initial_delay_secs'],
  });

export const agentConfigSchema = z
  .object({
    data_dir: z.string().min(1).default('/var/lib/ferry-agent'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    admin: z
      .object({ listen: listenAddress.default('127.0.0.1:9575') })
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
    sources: z.array(sourceSchema).default([]),
    uplink: uplinkSchema.prefault({}),
    shutdown_timeout_secs: secs('shutdown_timeout_secs').default(15),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.sources.forEach((s, i) => {
      const first = seen.get(s.id);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['sources', i, 'id'], message: `duplicate source id "${s.id}" (also sources[${first}])` });
      seen.set(s.id, i);
    });
  });

export type AgentConfig = z.output<typeof agentConfigSchema>;
export type MllpSourceConfig = z.output<typeof mllpSourceSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type UplinkConfig = z.output<typeof uplinkSchema>;
