// Payload schemas of the fleet bus topics (JSON, UTF-8). Both sides parse what they receive with
// these and drop (and count) what does not parse: a bad payload never crashes either side.

import { z } from 'zod';
import { logLevelSchema } from '../policy/fields.js';
import { policyConfigSchema } from '../policy/policy.js';

/** `policy` topic (retained): the policy the agent should run. */
export const policyMessageSchema = z.object({
  policy_id: z.string().min(1),
  version: z.number().int().positive(),
  /** The validated policy document (sizes as numbers after validation is fine too). */
  config: policyConfigSchema,
  published_at: z.string(),
});
export type PolicyMessage = z.output<typeof policyMessageSchema>;
export type PolicyMessageInput = z.input<typeof policyMessageSchema>;

const errorInfoSchema = z.object({ code: z.string(), message: z.string(), at: z.string() }).nullable();

/** One source as the agent reports it: health, counters, and the policy version it runs. */
export const sourceStatusSchema = z.object({
  id: z.string(),
  type: z.string(),
  /** running | starting | stopping | stopped | failed */
  state: z.string(),
  message: z.string().optional(),
  /** Counters are source-type specific (messages, connections, files...), all numbers. */
  counters: z.record(z.string(), z.number()),
  last_error: errorInfoSchema.optional(),
});

/** What applying a policy did: the applied version, and per-source failures that kept the last good one. */
export const policyApplySchema = z.object({
  policy_id: z.string().nullable(),
  /** The version now in force (null: the agent runs its local file only). */
  applied_version: z.number().int().nullable(),
  /** The newest version the agent received, which may have failed (wholly or for some sources). */
  received_version: z.number().int().nullable(),
  /** ok: everything applied; partial: some sources kept their last good config; failed: nothing applied. */
  state: z.enum(['ok', 'partial', 'failed', 'none']),
  errors: z.array(z.object({ path: z.string(), message: z.string() })),
});

/** `status` topic (retained; also the last will with online: false). */
export const statusMessageSchema = z.object({
  agent_id: z.string(),
  online: z.boolean(),
  /** Why offline: "shutdown" (clean stop) or "lost" (last will). */
  reason: z.string().optional(),
  version: z.string().optional(),
  started_at: z.string().optional(),
  uptime_secs: z.number().optional(),
  policy: policyApplySchema.optional(),
  buffer: z
    .object({
      depth: z.number(),
      bytes: z.number(),
      max_bytes: z.number(),
      oldest_pending_age_secs: z.number().nullable(),
      full: z.boolean(),
    })
    .optional(),
  uplink: z.object({ state: z.string(), last_error: errorInfoSchema.optional() }).optional(),
  sources: z.array(sourceStatusSchema).optional(),
  last_error: errorInfoSchema.optional(),
  /** Seconds between heartbeats the agent promises; the control plane marks it offline when late. */
  heartbeat_secs: z.number().positive().optional(),
  sent_at: z.string(),
});
export type StatusMessage = z.output<typeof statusMessageSchema>;

/** `telemetry` topic: counters at an interval (not retained). */
export const telemetryMessageSchema = z.object({
  agent_id: z.string(),
  counters: z.record(z.string(), z.number()),
  sent_at: z.string(),
});
export type TelemetryMessage = z.output<typeof telemetryMessageSchema>;

export const COMMAND_TYPES = ['ping', 'reload', 'restart', 'flush', 'set-log-level'] as const;
export const commandTypeSchema = z.enum(COMMAND_TYPES);
export type CommandType = z.output<typeof commandTypeSchema>;

export const commandArgsSchemas = {
  ping: z.object({}).strict(),
  reload: z.object({}).strict(),
  restart: z.object({}).strict(),
  flush: z.object({}).strict(),
  'set-log-level': z.object({ level: logLevelSchema }).strict(),
} as const;

/** `commands` topic (QoS 1, not retained). The agent runs each id at most once and refuses it after expires_at. */
export const commandMessageSchema = z.object({
  id: z.string().min(1).max(128),
  type: commandTypeSchema,
  args: z.record(z.string(), z.unknown()).default({}),
  issued_at: z.string(),
  expires_at: z.string(),
});
export type CommandMessage = z.output<typeof commandMessageSchema>;

export const COMMAND_STATUSES = ['pending', 'succeeded', 'failed', 'expired'] as const;

/** `command-results` topic (QoS 1). */
export const commandResultMessageSchema = z.object({
  id: z.string().min(1),
  status: z.enum(['succeeded', 'failed', 'expired']),
  /** Command-specific detail (ping: { pong_at }, flush: { pending }...), or the error. */
  result: z.record(z.string(), z.unknown()).optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  finished_at: z.string(),
});
export type CommandResultMessage = z.output<typeof commandResultMessageSchema>;
