// The fleet status body and telemetry built from one snapshot: the body validates against the
// proto/fleet status schema, apply errors show on the source they belong to (kept its last good
// config) or as a failed source (runs nothing), and only numeric counters travel.

import { describe, expect, it } from 'vitest';
import { statusMessageSchema } from '../../proto/fleet/index.js';
import type { BufferStats } from '../buffer/index.js';
import type { Source, SourceApplyError } from '../sources/index.js';
import type { UplinkStatus } from '../uplink/index.js';
import { fleetStatusBody, telemetryCounters, type AgentSnapshot } from './status.js';

const T = Date.parse('2026-11-25T10:00:00.000Z');

/** Only what the builders read of a running source. */
function source(id: string, counters: Record<string, unknown>): Source {
  return {
    config: { id, type: 'mllp', listen: '127.0.0.1:0' } as Source['config'],
    start: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    health: () => ({ state: 'running', message: 'listening', since: new Date(T).toISOString() }),
    counters: () => counters as ReturnType<Source['counters']>,
    describe: () => ({ listen: { host: '127.0.0.1', port: 2575 } }),
  };
}

const buffer: BufferStats = { bufferId: 'b1', depth: 4, bytes: 4000, maxBytes: 1e6, oldestReceivedAt: T - 2500, full: false, lastSeq: 41, commits: 9 };
const uplink: UplinkStatus = {
  state: 'disconnected',
  target: '127.0.0.1:1',
  tls: false,
  pending: { count: 4, bytes: 4000, oldest_age_secs: 2.5 },
  in_flight_batches: 1,
  committed_seq: 37,
  last_ack_at: null,
  last_error: { code: 'unavailable', message: 'connection refused', at: new Date(T).toISOString() },
  message: 'retrying',
};
const errors: SourceApplyError[] = [
  { id: 'adt', type: 'mllp', path: 'sources[0]', code: 'listen_failed', message: 'cannot listen on 127.0.0.1:9: EADDRINUSE', at: new Date(T).toISOString(), kept: 'last_good' },
  { id: 'lab', type: 'file_drop', path: 'sources[1]', code: 'source_failed', message: 'folder missing', at: new Date(T).toISOString(), kept: 'none' },
];

const snapshot: AgentSnapshot = {
  version: '1.2.3',
  startedAt: T - 61_400,
  now: T,
  buffer,
  uplink,
  sources: [source('adt', { messagesAcked: 7, connections: 2, lastError: 'text is not a counter' })],
  sourceErrors: errors,
  policy: { policy_id: 'ward', applied_version: 3, received_version: 3, state: 'partial', errors: [{ path: 'sources[0]', message: 'source adt: cannot listen' }] },
};

describe('fleet status and telemetry', () => {
  it('the status body validates against the proto schema and places each apply error', () => {
    const body = fleetStatusBody(snapshot);
    const parsed = statusMessageSchema.safeParse({ ...body, agent_id: 'a1', online: true, sent_at: new Date(T).toISOString() });
    expect(parsed.success).toBe(true);
    expect(body).toMatchObject({
      version: '1.2.3',
      started_at: '2026-11-25T09:58:58.600Z',
      uptime_secs: 61,
      policy: { policy_id: 'ward', applied_version: 3, state: 'partial' },
      buffer: { depth: 4, bytes: 4000, max_bytes: 1e6, oldest_pending_age_secs: 2.5, full: false },
      uplink: { state: 'disconnected', last_error: uplink.last_error },
      last_error: uplink.last_error,
    });
    expect(body.sources).toEqual([
      { id: 'adt', type: 'mllp', state: 'running', message: 'listening; kept its last good config: cannot listen on 127.0.0.1:9: EADDRINUSE', counters: { messagesAcked: 7, connections: 2 }, last_error: { code: 'listen_failed', message: errors[0]!.message, at: errors[0]!.at } },
      { id: 'lab', type: 'file_drop', state: 'failed', message: 'folder missing', counters: {}, last_error: { code: 'source_failed', message: 'folder missing', at: errors[1]!.at } },
    ]);
  });

  it('telemetry is flat numeric counters named by part and source', () => {
    expect(telemetryCounters(snapshot)).toEqual({
      'buffer.depth': 4,
      'buffer.bytes': 4000,
      'buffer.max_bytes': 1e6,
      'buffer.commits': 9,
      'buffer.last_seq': 41,
      'uplink.in_flight_batches': 1,
      'uplink.committed_seq': 37,
      uptime_secs: 61,
      'sources.adt.messagesAcked': 7,
      'sources.adt.connections': 2,
    });
    expect(telemetryCounters({ ...snapshot, uplink: { ...uplink, committed_seq: null } })).not.toHaveProperty('uplink.committed_seq');
  });
});
