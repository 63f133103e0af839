// An agent's presence and health, derived from the latest status it published, when it arrived,
// and a few backlog samples. Pure functions of (what we know, now), so the API, the sweep and the
// rollout all answer the same thing.

import type { StatusMessage } from '../../proto/fleet/index.js';
import type { BacklogSample } from '../store/index.js';

export type AgentHealth = 'healthy' | 'degraded' | 'offline';

/** What the fleet service remembers of one agent. */
export interface AgentEntry {
  status: StatusMessage;
  /** ms since the epoch, when the control plane received the status. */
  receivedAt: number;
  /** false after the last will, a clean shutdown, or a heartbeat the sweep found late. */
  online: boolean;
  /** Oldest first. */
  samples: BacklogSample[];
  /** When the uplink was first reported not connected (null while connected). */
  uplinkDownSince: number | null;
}

export interface HealthOptions {
  /** Used when a status does not say its heartbeat_secs. */
  readonly defaultHeartbeatSecs: number;
  /** Offline after this many heartbeats without a status. */
  readonly heartbeatMisses: number;
  /** Degraded when the buffer holds more than this share of max_bytes. */
  readonly bufferHighWater: number;
  /** Degraded when this many samples (or more) each show a deeper backlog than the one before... */
  readonly growingSamples: number;
  /** ...and the latest holds at least this many messages (a burst of a few during a blip is not a trend). */
  readonly growingMinDepth: number;
  /** Degraded when the uplink has been down this long. */
  readonly uplinkDownSecs: number;
}

export const DEFAULT_HEALTH_OPTIONS: HealthOptions = {
  defaultHeartbeatSecs: 30,
  heartbeatMisses: 3,
  bufferHighWater: 0.8,
  growingSamples: 3,
  growingMinDepth: 100,
  uplinkDownSecs: 300,
};

export interface AgentPresence {
  readonly online: boolean;
  readonly health: AgentHealth;
  readonly reasons: string[];
}

/** The longest silence, in ms, after which an online agent counts as offline. */
export function heartbeatDeadlineMs(entry: AgentEntry, options: HealthOptions): number {
  return (entry.status.heartbeat_secs ?? options.defaultHeartbeatSecs) * options.heartbeatMisses * 1000;
}

export function isLate(entry: AgentEntry, now: number, options: HealthOptions): boolean {
  return now - entry.receivedAt > heartbeatDeadlineMs(entry, options);
}

export function derivePresence(entry: AgentEntry | undefined, now: number, options: HealthOptions): AgentPresence {
  if (!entry) return { online: false, health: 'offline', reasons: ['no status received yet'] };
  const s = entry.status;
  if (!entry.online || !s.online || isLate(entry, now, options)) {
    let why: string;
    if (!s.online && s.reason === 'shutdown') why = 'the agent stopped cleanly';
    else if (!s.online) why = 'the agent lost its connection (last will)';
    else why = `no status for ${Math.round((now - entry.receivedAt) / 1000)} s (heartbeat ${s.heartbeat_secs ?? options.defaultHeartbeatSecs} s)`;
    return { online: false, health: 'offline', reasons: [why] };
  }
  const reasons: string[] = [];
  const b = s.buffer;
  if (b?.full) reasons.push('buffer full: new messages are refused');
  else if (b && b.max_bytes > 0 && b.bytes > b.max_bytes * options.bufferHighWater) reasons.push(`buffer at ${Math.round((b.bytes / b.max_bytes) * 100)}% of max_bytes`);
  if (isGrowing(entry.samples, options.growingSamples, options.growingMinDepth)) {
    const first = entry.samples[0]!;
    const last = entry.samples[entry.samples.length - 1]!;
    reasons.push(`backlog growing: ${first.depth} → ${last.depth} messages over ${Math.round((last.at - first.at) / 1000)} s`);
  }
  for (const src of s.sources ?? []) {
    if (src.state === 'failed') reasons.push(`source ${src.id} failed${src.message ? `: ${src.message}` : src.last_error ? `: ${src.last_error.message}` : ''}`);
  }
  const apply = s.policy;
  if (apply && (apply.state === 'failed' || apply.state === 'partial')) {
    const first = apply.errors[0];
    reasons.push(`policy version ${apply.received_version ?? '?'} ${apply.state === 'failed' ? 'failed to apply' : 'applied partially'}${first ? `: ${first.path}: ${first.message}` : ''}`);
  }
  if (entry.uplinkDownSince !== null && now - entry.uplinkDownSince >= options.uplinkDownSecs * 1000) {
    reasons.push(`uplink ${s.uplink?.state ?? 'down'} for ${Math.round((now - entry.uplinkDownSince) / 1000)} s`);
  }
  return { online: true, health: reasons.length > 0 ? 'degraded' : 'healthy', reasons };
}

/** True when the last `count` samples each hold more messages than the one before, the latest at least minDepth. */
export function isGrowing(samples: readonly BacklogSample[], count: number, minDepth = 0): boolean {
  if (samples.length < count) return false;
  const tail = samples.slice(-count);
  if (tail[tail.length - 1]!.depth < minDepth) return false;
  return tail.every((s, i) => i === 0 || s.depth > tail[i - 1]!.depth);
}

/** Uplink states that are not an outage. */
const UPLINK_OK = new Set(['connected', 'disabled', 'not_enrolled']);

/** Folds a new status into an entry (or makes one): samples at most one per minGapMs, uplink outage start. */
export function applyStatus(previous: AgentEntry | undefined, status: StatusMessage, now: number, sampling: { readonly minGapMs: number; readonly keep: number }): AgentEntry {
  const samples = previous ? [...previous.samples] : [];
  if (status.buffer) {
    const last = samples[samples.length - 1];
    if (!last || now - last.at >= sampling.minGapMs) {
      samples.push({ at: now, depth: status.buffer.depth, bytes: status.buffer.bytes });
      if (samples.length > sampling.keep) samples.splice(0, samples.length - sampling.keep);
    }
  }
  const uplinkState = status.uplink?.state;
  const down = status.online && uplinkState !== undefined && !UPLINK_OK.has(uplinkState);
  // An offline status (last will, clean stop) says only that: keep what the agent last reported
  // (software and applied policy versions, backlog, sources) so the API and the rollout still show
  // them while it is away, instead of nulls.
  const kept: StatusMessage =
    status.online || !previous
      ? status
      : { ...previous.status, agent_id: status.agent_id, online: false, reason: status.reason, sent_at: status.sent_at };
  return {
    status: kept,
    receivedAt: now,
    online: status.online,
    samples,
    uplinkDownSince: down ? (previous?.uplinkDownSince ?? now) : null,
  };
}
