import { describe, expect, it } from 'vitest';
import type { StatusMessage } from '../../proto/fleet/index.js';
import { DEFAULT_HEALTH_OPTIONS, applyStatus, derivePresence, isGrowing } from './health.js';

const T = 1_764_000_000_000;
const base = (extra: Partial<StatusMessage> = {}): StatusMessage => ({ agent_id: 'a', online: true, sent_at: 'x', heartbeat_secs: 10, ...extra });
const sampling = { minGapMs: 5000, keep: 5 };

describe('agent health', () => {
  it('degrades after the uplink has been down for uplinkDownSecs, and recovers when it reconnects', () => {
    let e = applyStatus(undefined, base({ uplink: { state: 'backoff' } }), T, sampling);
    expect(derivePresence(e, T + 299_000, { ...DEFAULT_HEALTH_OPTIONS, heartbeatMisses: 100 })).toMatchObject({ health: 'healthy' });
    e = applyStatus(e, base({ uplink: { state: 'connecting' } }), T + 300_000, sampling);
    expect(derivePresence(e, T + 300_000, DEFAULT_HEALTH_OPTIONS)).toEqual({ online: true, health: 'degraded', reasons: ['uplink connecting for 300 s'] });
    e = applyStatus(e, base({ uplink: { state: 'connected' } }), T + 301_000, sampling);
    expect(derivePresence(e, T + 301_000, DEFAULT_HEALTH_OPTIONS).health).toBe('healthy');
  });

  it('samples the backlog at most once per gap, keeps a few, and calls it growing only when each is deeper', () => {
    const buffer = (depth: number) => ({ buffer: { depth, bytes: depth, max_bytes: 1e9, oldest_pending_age_secs: null, full: false } });
    let e = applyStatus(undefined, base(buffer(1)), T, sampling);
    e = applyStatus(e, base(buffer(50)), T + 1000, sampling); // inside the gap: not sampled
    e = applyStatus(e, base(buffer(2)), T + 5000, sampling);
    expect(e.samples.map((s) => s.depth)).toEqual([1, 2]);
    for (let i = 2; i <= 8; i++) e = applyStatus(e, base(buffer(i + 1)), T + i * 5000, sampling);
    expect(e.samples.map((s) => s.depth)).toEqual([5, 6, 7, 8, 9]);
    expect(isGrowing(e.samples, 3)).toBe(true);
    expect(isGrowing([{ at: 0, depth: 5, bytes: 0 }, { at: 1, depth: 5, bytes: 0 }, { at: 2, depth: 6, bytes: 0 }], 3)).toBe(false);
    expect(isGrowing([{ at: 0, depth: 5, bytes: 0 }, { at: 1, depth: 6, bytes: 0 }], 3)).toBe(false);
    // A few messages held through a blip are not a trend: the latest must reach the minimum depth.
    expect(isGrowing(e.samples, 3, 100)).toBe(false);
    expect(isGrowing([{ at: 0, depth: 10, bytes: 0 }, { at: 1, depth: 60, bytes: 0 }, { at: 2, depth: 100, bytes: 0 }], 3, 100)).toBe(true);
  });

  it('is offline for a clean stop, a last will, or a late heartbeat, each with its reason', () => {
    expect(derivePresence(undefined, T, DEFAULT_HEALTH_OPTIONS)).toEqual({ online: false, health: 'offline', reasons: ['no status received yet'] });
    expect(derivePresence(applyStatus(undefined, base({ online: false, reason: 'shutdown' }), T, sampling), T, DEFAULT_HEALTH_OPTIONS).reasons).toEqual(['the agent stopped cleanly']);
    expect(derivePresence(applyStatus(undefined, base({ online: false, reason: 'lost' }), T, sampling), T, DEFAULT_HEALTH_OPTIONS).reasons).toEqual(['the agent lost its connection (last will)']);
    const e = applyStatus(undefined, base(), T, sampling);
    expect(derivePresence(e, T + 30_000, DEFAULT_HEALTH_OPTIONS).online).toBe(true);
    expect(derivePresence(e, T + 30_001, DEFAULT_HEALTH_OPTIONS)).toEqual({ online: false, health: 'offline', reasons: ['no status for 30 s (heartbeat 10 s)'] });
  });

  // Found by test/e2e-fleet.test.ts: a last will carries no versions; the API showed nulls for an offline agent.
  it('an offline status keeps what the agent last reported (versions, applied policy, backlog)', () => {
    const policy = { policy_id: 'p', applied_version: 5, received_version: 5, state: 'ok' as const, errors: [] };
    const online = applyStatus(undefined, base({ version: '1.2.3', policy, buffer: { depth: 3, bytes: 9, max_bytes: 99, oldest_pending_age_secs: 1, full: false } }), T, sampling);
    const lost = applyStatus(online, { agent_id: 'a', online: false, reason: 'lost', sent_at: 'y' }, T + 1000, sampling);
    expect(lost.status).toMatchObject({ online: false, reason: 'lost', sent_at: 'y', version: '1.2.3', policy, buffer: { depth: 3 } });
    expect(lost.online).toBe(false);
    expect(derivePresence(lost, T + 1000, DEFAULT_HEALTH_OPTIONS).reasons).toEqual(['the agent lost its connection (last will)']);
    const back = applyStatus(lost, base({ version: '1.2.4' }), T + 2000, sampling);
    expect(back.status).toEqual(base({ version: '1.2.4' }));
  });
});
