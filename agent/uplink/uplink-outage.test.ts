// The uplink through failures, against a real IngestServer in a child process: the control plane
// killed and restarted under load (store-and-forward meanwhile), and a silent network drop (a
// proxy that stops forwarding without closing anything).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readControlPlaneRows, startIngestServer, type IngestServerProcess } from '../../test/helpers/ingest-server-process.js';
import { sleep, waitFor } from '../../test/helpers/mllp-harness.js';
import { TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { appendMessages, createTestUplink, deliveryReport, expectedHash, metricValue, openTestBuffer } from '../../test/helpers/uplink-harness.js';
import type { MessageBuffer } from '../buffer/index.js';
import type { Uplink } from './index.js';

let dir: string;
let server: IngestServerProcess | undefined;
let buffer: MessageBuffer;
let uplink: Uplink | undefined;
let proxy: TcpProxy | undefined;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-uplink-outage-'));
  buffer = await openTestBuffer(dir);
});

afterEach(async () => {
  await uplink?.stop(Date.now() + 2000);
  uplink = undefined;
  await proxy?.close();
  proxy = undefined;
  await buffer.close();
  await server?.stop('SIGKILL');
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Appends small groups of messages every few ms until stopped; every append must commit. */
function loadGenerator(first: number): { sent: string[]; stop: () => Promise<void> } {
  const sent: string[] = [];
  let running = true;
  let n = first;
  const loop = (async () => {
    while (running) {
      const count = 1 + (n % 4);
      sent.push(...(await appendMessages(buffer, n, count, n % 3 === 0 ? 'src-b' : 'src-a')));
      n += count;
      await sleep(3);
    }
  })();
  return {
    sent,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

describe('Uplink: outages', () => {
  it('control plane SIGKILLed under load and restarted: appends keep committing, the backlog drains, lost 0, duplicated 0', async () => {
    const cpDir = join(dir, 'cp');
    server = await startIngestServer({ dataDir: cpDir, maxBatchMessages: 32 });
    const port = server.port;
    const t = createTestUplink(buffer, server, { retry_initial_delay_secs: 0.1, retry_max_delay_secs: 0.5, ack_timeout_secs: 5 });
    uplink = t.uplink;
    await uplink.start();
    const load = loadGenerator(1);
    for (let round = 0; round < 2; round++) {
      await sleep(700);
      await server.stop('SIGKILL');
      const sentAtKill = load.sent.length;
      // Store-and-forward: the agent side keeps committing while the control plane is gone.
      await waitFor(() => uplink!.status().state !== 'connected', 5000, 'uplink noticed the outage');
      await sleep(800);
      expect(load.sent.length).toBeGreaterThan(sentAtKill + 20);
      expect(buffer.stats().depth).toBeGreaterThan(20);
      server = await startIngestServer({ dataDir: cpDir, port, maxBatchMessages: 32 });
      await waitFor(() => uplink!.status().state === 'connected', 10_000, 'uplink reconnected');
    }
    await sleep(500);
    await load.stop();
    await waitFor(() => buffer.stats().depth === 0, 15_000, 'backlog drained');

    const report = deliveryReport(load.sent, await readControlPlaneRows(cpDir), expectedHash);
    const acked = await metricValue(t.metrics, 'ferry_uplink_messages_acked_total');
    console.log(`control-plane restarts x2: ${JSON.stringify({ ...report, acked_by_control_plane: acked })}`);
    expect(report.sent).toBeGreaterThan(200);
    expect(report).toMatchObject({ stored: report.sent, lost: 0, duplicated: 0, outOfOrder: 0, hashMismatches: 0 });
    expect(acked).toBeGreaterThanOrEqual(report.sent - 100); // Acks lost with a killed server are covered by the next Welcome
    expect(await metricValue(t.metrics, 'ferry_uplink_reconnects_total')).toBeGreaterThanOrEqual(2);
    expect(uplink.status().committed_seq).toBe(buffer.stats().lastSeq);
  });

  it('silent network drop: notices within the Ack timeout, keeps every row, and delivers everything once the path returns', async () => {
    server = await startIngestServer({ dataDir: join(dir, 'cp'), maxBatchMessages: 16, maxInFlight: 2 });
    proxy = new TcpProxy('127.0.0.1', server.port);
    await proxy.start();
    // Keepalive far longer than the test: the Ack deadline alone must notice the dead path.
    const t = createTestUplink(buffer, server, { ack_timeout_secs: 2, keepalive_time_secs: 60, keepalive_timeout_secs: 20, retry_initial_delay_secs: 0.1, retry_max_delay_secs: 0.5 }, `127.0.0.1:${proxy.port}`);
    uplink = t.uplink;
    await uplink.start();
    const sent = await appendMessages(buffer, 1, 50);
    await waitFor(() => buffer.stats().depth === 0, 10_000, 'first 50 delivered');

    proxy.pause();
    const pausedAt = Date.now();
    sent.push(...(await appendMessages(buffer, 51, 50)));
    await waitFor(() => uplink!.status().last_error?.code === 'ACK_TIMEOUT', 8000, 'stalled stream noticed');
    const noticedMs = Date.now() - pausedAt;
    expect(noticedMs).toBeGreaterThanOrEqual(1900);
    expect(noticedMs).toBeLessThan(4500);
    expect(uplink.status().state).not.toBe('connected');
    // Sent but never acknowledged: every row is still here.
    expect(buffer.stats().depth).toBe(50);
    await sleep(2500); // attempts into the black hole time out too
    expect(buffer.stats().depth).toBe(50);

    proxy.resume();
    await waitFor(() => buffer.stats().depth === 0, 10_000, 'delivered after the path returned');
    expect(deliveryReport(sent, await readControlPlaneRows(server.dataDir), expectedHash)).toEqual({ sent: 100, stored: 100, lost: 0, duplicated: 0, outOfOrder: 0, hashMismatches: 0 });
    expect(uplink.status().state).toBe('connected');
    expect(t.logs.join('\n')).toContain('uplink stream stalled');
  });
});
