// Field types shared by every config and policy schema: sizes ("16MiB"), listen addresses
// ("0.0.0.0:2575"), CIDR blocks, seconds, source ids, TLS files. One definition each, so the agent's
// file, a fleet policy and the control plane's file accept and reject exactly the same values.

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

/** A positive size in bytes, written as a number or "64KiB"-style string; parses to a number. */
export const size = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined || n <= 0) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a positive size such as 1500, "64KiB", "16MiB" or "10GiB"` });
      return z.NEVER;
    }
    return n;
  });

/** "host:port" with a port 0-65535; IPv6 hosts in brackets; an empty host means 0.0.0.0. */
export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** A host name or address that never leaves this machine (TLS is required for every other peer). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

export const listenAddress = (example = '0.0.0.0:2575') =>
  z.string().refine((v) => parseListen(v) !== undefined, { message: `must be host:port, e.g. ${example} or [::]:${example.split(':').pop()}` });

export const cidr = z.string().refine(
  (v) => {
    const [addr, bits, ...rest] = v.split('/');
    if (rest.length > 0 || !addr || isIP(addr) === 0) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return Number.isInteger(n) && n >= 0 && n <= (isIP(addr) === 4 ? 32 : 128);
  },
  { message: 'must be an IP address or CIDR block, e.g. 10.1.0.0/16' },
);

export const secs = (what: string) => z.number({ message: `${what} must be a number of seconds` }).positive();

export const sourceId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, ".", "_" or "-"');

export const logLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);
export type LogLevel = z.output<typeof logLevelSchema>;

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

/** One problem of a config or policy, by path ("sources[1].listen"). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export function toProblem(issue: z.core.$ZodIssue): ConfigProblem {
  const path = issue.path.length === 0 ? '(root)' : issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
  return { path, message: issue.message };
}
