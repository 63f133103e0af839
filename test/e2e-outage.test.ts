// End to end across real processes, with the path to the control plane broken under load:
// - outage: the control plane is stopped (SIGTERM) while 8 senders keep going, the agent keeps
//   acknowledging, the control plane comes back on the same data dir and gRPC port, the backlog
//   drains;
// - silent drop: a TCP proxy between agent and control plane stops forwarding without closing
//   anything; the agent notices within its ack timeout / keepalive, keeps acknowledging, and
//   delivers everything once the path returns.
// Each counts sent / acknowledged / stored / lost / duplicated from the control plane's HTTP API.

import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from './helpers/agent-process.js';
import { startControlPlane, type ControlPlaneProcess } from './helpers/control-plane-process.js';
import { agentOptions, agentStatus, formatTally, LoadSender, sleep, startFleet, tally, waitDrained, waitFor } from './helpers/e2e.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

let dir: string | undefined;
let agent: RunningAgent | undefined;
let cp: ControlPlaneProcess | undefined;
let sender: LoadSender | undefined;
let proxy: TcpProxy | undefined;

afterEach(async () => {
  await sender?.stop(1000);
  await agent?.stop('SIGKILL');
  await cp?.stop('SIGKILL');
  await proxy?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  agent = cp = dir = sender = proxy = undefined;
});

describe('end to end under a broken path to the control plane', () => {
  it('control plane stopped under load: the agent keeps acknowledging; after the restart every acknowledged message is stored once', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-outage-'));
    const fleet = await startFleet(dir, agentOptions(join(dir, 'agent'), [{ id: 'load', type: 'mllp', listen: '127.0.0.1:0' }]));
    cp = fleet.cp;
    agent = await startAgent(fleet.agentOptions);
    const mllpPort = agent.mllpPorts.load!;
    const started = Date.now();
    sender = new LoadSender({ port: () => mllpPort, connections: 8, prefix: 'OUT', pauseMs: 1 });
    sender.start();
    await sender.waitAcked(1000, 20_000);
    await waitFor(async () => (await agentStatus(agent!.adminPort)).uplink.state === 'connected', 10_000, 'uplink connected');

    // Outage: graceful stop, load continues.
    const grpcPort = cp.grpcPort;
    expect(await cp.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const ackedAtStop = sender.acked;
    await waitFor(async () => (await agentStatus(agent!.adminPort)).uplink.state !== 'connected', 5000, 'outage noticed');
    await sleep(3000);
    const ackedDuringOutage = sender.acked - ackedAtStop;
    const down = await agentStatus(agent.adminPort);
    expect(down.uplink.state).not.toBe('connected');
    expect(down.uplink.pending.count).toBeGreaterThan(0);

    cp = await startControlPlane({ dataDir: cp.dataDir, grpcPort });
    fleet.api.baseUrl = cp.url;
    await sleep(1000);
    await sender.stop();
    await waitDrained(agent.adminPort, 40_000);

    const t = tally(sender, await fleet.api.listMessages({ agent: fleet.agentId }));
    console.log(formatTally('e2e-outage', t, { acked_during_outage: ackedDuringOutage, backlog_at_restart: down.uplink.pending.count, resent: sender.resent, sender_retries: sender.retries, wall_ms: Date.now() - started }));
    expect(ackedDuringOutage).toBeGreaterThan(0);
    expect(t.lost).toBe(0);
    expect(t.duplicated).toBe(0);
    expect(t.corrupt).toBe(0);
    expect(t.outOfOrder).toBe(0);
    expect(t.acknowledged).toBe(t.sent);
    expect(t.stored).toBe(t.acknowledged);
  });

  it('silent network drop: the agent notices the dead path, keeps acknowledging, and delivers everything when it returns', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-drop-'));
    const ackTimeoutSecs = 2;
    const keepalive = { time: 1, timeout: 1 };
    const options = agentOptions(join(dir, 'agent'), [{ id: 'load', type: 'mllp', listen: '127.0.0.1:0' }], {
      ack_timeout_secs: ackTimeoutSecs,
      keepalive_time_secs: keepalive.time,
      keepalive_timeout_secs: keepalive.timeout,
    });
    const fleet = await startFleet(dir, options);
    cp = fleet.cp;
    proxy = new TcpProxy('127.0.0.1', cp.grpcPort);
    await proxy.start();
    // Enrolled directly; the gRPC path then goes through the proxy.
    const credsPath = join(options.dir, 'data', 'credentials.json');
    const creds = JSON.parse(readFileSync(credsPath, 'utf8')) as { grpc_target: string };
    expect(creds.grpc_target).toBe(`127.0.0.1:${cp.grpcPort}`);
    writeFileSync(credsPath, JSON.stringify({ ...creds, grpc_target: `127.0.0.1:${proxy.port}` }), { mode: 0o600 });

    agent = await startAgent(options);
    const mllpPort = agent.mllpPorts.load!;
    const started = Date.now();
    sender = new LoadSender({ port: () => mllpPort, connections: 4, prefix: 'DROP', pauseMs: 2 });
    sender.start();
    await sender.waitAcked(500, 20_000);
    await waitFor(async () => (await agentStatus(agent!.adminPort)).uplink.state === 'connected', 10_000, 'uplink connected');
    expect((await agentStatus(agent.adminPort)).uplink.target).toBe(`127.0.0.1:${proxy.port}`);

    proxy.pause();
    const pausedAt = Date.now();
    const ackedAtPause = sender.acked;
    // Batches keep going out and no Ack comes back: the ack timeout (or keepalive) must fire.
    const limitMs = (ackTimeoutSecs + keepalive.time + keepalive.timeout) * 1000 + 3000;
    await waitFor(async () => (await agentStatus(agent!.adminPort)).uplink.state !== 'connected', limitMs, 'dead path noticed');
    const noticedMs = Date.now() - pausedAt;
    await sleep(1500);
    const down = await agentStatus(agent.adminPort);
    const ackedDuringDrop = sender.acked - ackedAtPause;
    expect(down.uplink.state).not.toBe('connected');
    expect(down.uplink.pending.count).toBeGreaterThan(0);

    proxy.resume();
    const resumedAt = Date.now();
    await waitFor(async () => (await agentStatus(agent!.adminPort)).uplink.state === 'connected', 15_000, 'reconnected through the proxy');
    const reconnectMs = Date.now() - resumedAt;
    await sleep(500);
    await sender.stop();
    await waitDrained(agent.adminPort, 30_000);

    const t = tally(sender, await fleet.api.listMessages({ agent: fleet.agentId }));
    console.log(
      formatTally('e2e-silent-drop', t, {
        acked_during_drop: ackedDuringDrop,
        noticed_ms: noticedMs,
        reconnected_ms: reconnectMs,
        proxy_connections: proxy.connections,
        last_error: down.uplink.last_error?.code ?? 'none',
        wall_ms: Date.now() - started,
      }),
    );
    expect(noticedMs).toBeLessThan(limitMs);
    expect(ackedDuringDrop).toBeGreaterThan(0);
    expect(t.lost).toBe(0);
    expect(t.duplicated).toBe(0);
    expect(t.corrupt).toBe(0);
    expect(t.outOfOrder).toBe(0);
    expect(t.acknowledged).toBe(t.sent);
    expect(t.stored).toBe(t.acknowledged);
  });
});
