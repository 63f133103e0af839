// The uplink against a real IngestServer (the control plane's, in a child process via its
// dev-server runner) and a real MessageBuffer: delivery, resume, and refused credentials.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readControlPlaneRows, startIngestServer, type IngestServerProcess } from '../../test/helpers/ingest-server-process.js';
import { waitFor } from '../../test/helpers/mllp-harness.js';
import { CANARY, appendMessages, createTestUplink, deliveryReport, expectedHash, metricValue, openTestBuffer } from '../../test/helpers/uplink-harness.js';
import type { MessageBuffer } from '../buffer/index.js';
import type { Uplink } from './index.js';

let dir: string;
let server: IngestServerProcess;
let buffer: MessageBuffer;
let uplink: Uplink | undefined;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-uplink-'));
  server = await startIngestServer({ dataDir: join(dir, 'cp'), maxBatchMessages: 64, maxInFlight: 3 });
  buffer = await openTestBuffer(dir);
});

afterEach(async () => {
  await uplink?.stop(Date.now() + 2000);
  uplink = undefined;
  await buffer.close();
  await server.stop('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('Uplink: delivery', () => {
  it('delivers what was buffered before and after it connected: once, in seq order, byte-identical, then deletes it', async () => {
    const sent = [...(await appendMessages(buffer, 1, 150, 'src-a')), ...(await appendMessages(buffer, 151, 150, 'src-b'))];
    const t = createTestUplink(buffer, server);
    uplink = t.uplink;
    await uplink.start();
    await waitFor(() => buffer.stats().depth === 0, 15_000, 'backlog delivered');
    expect(uplink.status()).toMatchObject({ state: 'connected', committed_seq: 300, pending: { count: 0, bytes: 0, oldest_age_secs: null }, in_flight_batches: 0 });
    // New rows while connected (single messages, as MLLP commits them) go without a reconnect.
    for (let n = 301; n <= 340; n++) sent.push(...(await appendMessages(buffer, n, 1, n % 2 ? 'src-a' : 'src-b')));
    await waitFor(() => buffer.stats().depth === 0 && uplink!.status().committed_seq === 340, 10_000, 'live messages delivered');

    const rows = await readControlPlaneRows(server.dataDir);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 340 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.bufferId))).toEqual(new Set([buffer.bufferId]));
    expect(deliveryReport(sent, rows, expectedHash)).toEqual({ sent: 340, stored: 340, lost: 0, duplicated: 0, outOfOrder: 0, hashMismatches: 0 });
    expect(rows.filter((r) => r.sourceId === 'src-b').length).toBe(170);

    expect(await metricValue(t.metrics, 'ferry_uplink_messages_acked_total')).toBe(340);
    expect(await metricValue(t.metrics, 'ferry_uplink_batches_sent_total')).toBeGreaterThanOrEqual(5); // 300 in batches of at most 64, then the live ones
    expect(await metricValue(t.metrics, 'ferry_uplink_connected')).toBe(1);
    expect(await metricValue(t.metrics, 'ferry_uplink_reconnects_total')).toBe(0);
    expect(uplink.status().last_ack_at).not.toBeNull();
    const logs = t.logs.join('\n');
    expect(logs).toContain('uplink connected');
    expect(logs).not.toContain(CANARY);
    expect(logs).not.toContain(server.secret);
  });

  it('after a reconnect resumes from the Welcome: rows the control plane holds are deleted, never resent', async () => {
    const sent = await appendMessages(buffer, 1, 100);
    const first = createTestUplink(buffer, server);
    await first.uplink.start();
    await waitFor(() => buffer.stats().depth === 0, 10_000, 'first 100 delivered');
    await first.uplink.stop(Date.now() + 2000);

    sent.push(...(await appendMessages(buffer, 101, 100)));
    const second = createTestUplink(buffer, server);
    uplink = second.uplink;
    await uplink.start();
    await waitFor(() => buffer.stats().depth === 0, 10_000, 'next 100 delivered');
    // The second stream started at Welcome(committed 100): it sent exactly the 100 new ones.
    expect(await metricValue(second.metrics, 'ferry_uplink_messages_acked_total')).toBe(100);
    expect(deliveryReport(sent, await readControlPlaneRows(server.dataDir), expectedHash)).toMatchObject({ stored: 200, lost: 0, duplicated: 0, outOfOrder: 0 });
  });

  it('refused credentials: the status shows the auth error, nothing is deleted, retries wait the maximum backoff', async () => {
    await appendMessages(buffer, 1, 20);
    const t = createTestUplink(buffer, { ...server, secret: 'not-the-secret-' + 'x'.repeat(30) }, { retry_initial_delay_secs: 0.05, retry_max_delay_secs: 30 });
    uplink = t.uplink;
    await uplink.start();
    await waitFor(() => uplink!.status().last_error?.code === 'UNAUTHENTICATED', 10_000, 'auth error reported');
    const s = uplink.status();
    expect(s.state).toBe('disconnected');
    expect(s.message).toContain('re-enroll this agent');
    expect(s.pending.count).toBe(20);
    expect(s.committed_seq).toBeNull();
    // At the maximum backoff (30 s), not the initial 50 ms: no second attempt within a second.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await metricValue(t.metrics, 'ferry_uplink_reconnects_total')).toBe(1);
    expect(buffer.stats().depth).toBe(20);
    expect(await readControlPlaneRows(server.dataDir)).toHaveLength(0);
    const logs = t.logs.join('\n');
    expect(logs).toContain('re-enroll this agent');
    expect(logs).not.toContain('not-the-secret-');
    // stop() does not wait out the backoff.
    const started = Date.now();
    await uplink.stop(Date.now() + 2000);
    uplink = undefined;
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
