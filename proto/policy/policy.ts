// A fleet policy: the part of an agent's configuration central ops set. Its keys are the agent
// file's (`sources`, `buffer`, `uplink`, `log_level`); each key a policy sets replaces the file's
// wholesale, keys it leaves out keep the file's (DESIGN.md). The control plane validates a policy
// with this schema before storing it; the agent validates it again before applying it.

import { z } from 'zod';
import { logLevelSchema, secs, size, toProblem, type ConfigProblem } from './fields.js';
import { sourcesSchema } from './sources.js';

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

/** Buffer settings a policy may set (the key file's location stays local to the agent). */
export const bufferPolicySchema = z
  .object({
    max_bytes: size('max_bytes').default(10 * 1024 ** 3),
  })
  .strict();

export const policyConfigSchema = z
  .object({
    sources: sourcesSchema.optional(),
    buffer: bufferPolicySchema.optional(),
    uplink: uplinkSchema.optional(),
    log_level: logLevelSchema.optional(),
  })
  .strict();

/** The policy document as written (sizes may be strings). */
export type PolicyConfigInput = z.input<typeof policyConfigSchema>;
/** The policy document after validation and defaults. */
export type PolicyConfig = z.output<typeof policyConfigSchema>;
export type UplinkConfig = z.output<typeof uplinkSchema>;

export type PolicyValidation = { readonly ok: true; readonly config: PolicyConfig } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/** Validates a policy document: every problem comes back at once, by path. */
export function validatePolicy(raw: unknown): PolicyValidation {
  const parsed = policyConfigSchema.safeParse(raw ?? {});
  if (parsed.success) return { ok: true, config: parsed.data };
  return { ok: false, problems: parsed.error.issues.map(toProblem) };
}
