// The fleet client's reconnects against a real broker that goes away: it retries with growing,
// jittered delays (not a fixed period), comes back when the broker does, and a stop cancels the
// pending retry.

import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../test/helpers/fleet-broker.js';
import { waitFor } from '../../test/helpers/mllp-harness.js';
import { validateConfig } from '../config/index.js';
import { createLogger } from '../log.js';
import { FleetClient } from './client.js';

const AGENT_ID = 'agt_reconnect_test';
const SECRET = 'reconnect-secret-0123456789';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP listener on the broker's port that counts connection attempts and drops each one. */
async function attemptCounter(port: number): Promise<{ attempts: () => number; close: () => Promise<void> }> {
  let attempts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    attempts++;
    sockets.add(s);
    s.destroy();
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    attempts: () => attempts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function client(url: string): FleetClient {
  const checked = validateConfig({ data_dir: '/tmp/unused', sources: [], fleet: { heartbeat_secs: 1, telemetry_secs: 1, keepalive_secs: 2, connect_timeout_secs: 2, reconnect_delay_secs: 0.2 } });
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const c = new FleetClient({
    agentId: AGENT_ID,
    secret: SECRET,
    url,
    config: checked.config.fleet,
    log: createLogger('info', sink),
    handlers: { status: () => ({}) as never, telemetry: () => ({}), policy: async () => {}, command: async () => undefined },
  });
  cleanups.push(() => c.stop());
  return c;
}

describe('FleetClient reconnects', () => {
  it('retries a lost broker with a widening jittered delay, reconnects when it is back, and stops retrying on stop()', async () => {
    let broker: TestBroker | undefined = await startBroker({ [AGENT_ID]: SECRET });
    cleanups.push(() => broker?.close());
    const port = broker.port;
    const c = client(broker.url);
    c.start();
    await waitFor(() => c.status().state === 'connected', 10_000, 'first connection');

    // The broker goes away; its port only answers with a dropped connection for 3 s.
    await broker.close();
    broker = undefined;
    const counter = await attemptCounter(port);
    await new Promise((r) => setTimeout(r, 3000));
    const duringOutage = counter.attempts();
    await counter.close();
    // A fixed 200 ms period makes ~15 attempts (14 measured with the old client); windows of 0.2,
    // 0.4, 0.8, 1.6, 3.2, then 6.4 s (32 × base) make about 5. More than 12 would need 13 delays
    // summing under 3 s, eight of them from 6.4 s windows (p < 1e-7).
    expect(duringOutage).toBeGreaterThanOrEqual(2);
    expect(duringOutage).toBeLessThanOrEqual(12);

    // Back: the next retry (within the widened window, at most a few seconds here) gets in.
    broker = await startBroker({ [AGENT_ID]: SECRET }, port);
    await waitFor(() => c.status().state === 'connected', 30_000, 'reconnected after the broker came back');

    // Gone again, then a clean stop: no attempt after it.
    await broker.close();
    broker = undefined;
    await waitFor(() => c.status().state !== 'connected', 10_000, 'disconnected');
    await c.stop();
    const afterStop = await attemptCounter(port);
    cleanups.push(() => afterStop.close());
    await new Promise((r) => setTimeout(r, 1500));
    expect(afterStop.attempts()).toBe(0);
  }, 60_000);
});
