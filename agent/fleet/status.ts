// What the agent tells the fleet about itself: the status body (proto/fleet statusMessageSchema,
// retained, on change and every heartbeat) and the telemetry counters. Pure functions of a snapshot
// the agent takes (buffer stats, uplink status, running sources and their apply errors, policy
// state), so the agent stays wiring and lifecycle and these shapes can be tested alone.

import type { BufferStats } from '../buffer/index.js';
import type { Source, SourceApplyError } from '../sources/index.js';
import type { UplinkStatus } from '../uplink/index.js';
import type { StatusBody } from './client.js';
import type { PolicyApplyState } from './policy-applier.js';

/** One moment of the agent, as the status and telemetry builders read it. */
export interface AgentSnapshot {
  readonly version: string;
  /** ms since the epoch. */
  readonly startedAt: number;
  readonly now: number;
  readonly buffer: BufferStats;
  readonly uplink: UplinkStatus;
  readonly sources: readonly Source[];
  /** The last apply's failures (SourceSet.errors()). */
  readonly sourceErrors: readonly SourceApplyError[];
  readonly policy: PolicyApplyState;
}

/** The status message body: a source that kept its last good config says so; one that runs nothing is listed as failed. */
export function fleetStatusBody(s: AgentSnapshot): StatusBody {
  const b = s.buffer;
  const errors = new Map(s.sourceErrors.map((e) => [e.id, e]));
  const sources: NonNullable<StatusBody['sources']> = s.sources.map((src) => {
    const h = src.health();
    const e = errors.get(src.config.id);
    return {
      id: src.config.id,
      type: src.config.type,
      state: h.state,
      message: e ? `${h.message}; kept its last good config: ${e.message}` : h.message,
      counters: numericCounters(src.counters()),
      last_error: e ? { code: e.code, message: e.message, at: e.at } : null,
    };
  });
  for (const e of errors.values()) {
    if (e.kept === 'none') sources.push({ id: e.id, type: e.type, state: 'failed', message: e.message, counters: {}, last_error: { code: e.code, message: e.message, at: e.at } });
  }
  return {
    version: s.version,
    started_at: new Date(s.startedAt).toISOString(),
    uptime_secs: Math.round((s.now - s.startedAt) / 1000),
    policy: { ...s.policy, errors: [...s.policy.errors] },
    buffer: {
      depth: b.depth,
      bytes: b.bytes,
      max_bytes: b.maxBytes,
      oldest_pending_age_secs: b.oldestReceivedAt === null ? null : (s.now - b.oldestReceivedAt) / 1000,
      full: b.full,
    },
    uplink: { state: s.uplink.state, last_error: s.uplink.last_error },
    sources,
    last_error: s.uplink.last_error,
  };
}

/** Counters for the telemetry topic: flat names, numbers only. */
export function telemetryCounters(s: Omit<AgentSnapshot, 'sourceErrors' | 'policy' | 'version'>): Record<string, number> {
  const b = s.buffer;
  const out: Record<string, number> = {
    'buffer.depth': b.depth,
    'buffer.bytes': b.bytes,
    'buffer.max_bytes': b.maxBytes,
    'buffer.commits': b.commits,
    'buffer.last_seq': b.lastSeq,
    'uplink.in_flight_batches': s.uplink.in_flight_batches,
    uptime_secs: Math.round((s.now - s.startedAt) / 1000),
  };
  if (s.uplink.committed_seq !== null) out['uplink.committed_seq'] = s.uplink.committed_seq;
  for (const src of s.sources) for (const [k, v] of Object.entries(numericCounters(src.counters()))) out[`sources.${src.config.id}.${k}`] = v;
  return out;
}

/** A source's counters without the non-numeric ones (last error text): what the fleet schema carries. */
export function numericCounters(counters: Readonly<Record<string, unknown>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(counters)) if (typeof v === 'number') out[k] = v;
  return out;
}
