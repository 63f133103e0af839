// End to end across real processes, with crashes under load: repeated SIGKILL of the agent
// (restarted each time on the same data dir and MLLP port) and, separately, of the control plane
// (restarted on the same data dir and gRPC port). 8 senders keep going throughout and behave like
// interface engines: what got no AA is sent again, byte-identical, so the agent's dedupe window
// must make it count once. After recovery every acknowledged message is stored exactly once.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from './helpers/agent-process.js';
import { startControlPlane, type ControlPlaneProcess } from './helpers/control-plane-process.js';
import { agentOptions, formatTally, LoadSender, restartAgent, sleep, startFleet, tally, waitDrained, type Tally } from './helpers/e2e.js';

const KILLS = 6;

let dir: string | undefined;
let agent: RunningAgent | undefined;
let cp: ControlPlaneProcess | undefined;
let sender: LoadSender | undefined;

afterEach(async () => {
  await sender?.stop(1000);
  await agent?.stop('SIGKILL');
  await cp?.stop('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
  agent = cp = dir = sender = undefined;
});

function expectExactlyOnce(t: Tally): void {
  expect(t.lost).toBe(0);
  expect(t.duplicated).toBe(0);
  expect(t.corrupt).toBe(0);
  expect(t.outOfOrder).toBe(0);
  expect(t.acknowledged).toBe(t.sent);
  expect(t.stored).toBe(t.acknowledged);
}

describe('end to end through crashes', () => {
  it(`SIGKILL of the agent ${KILLS} times under load: every acknowledged message is stored exactly once`, async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-agent-kill-'));
    const fleet = await startFleet(dir, agentOptions(join(dir, 'agent'), [{ id: 'load', type: 'mllp', listen: '127.0.0.1:0' }]));
    cp = fleet.cp;
    agent = await startAgent(fleet.agentOptions);
    const mllpPort = agent.mllpPorts.load!;
    const started = Date.now();
    sender = new LoadSender({ port: () => mllpPort, connections: 8, prefix: 'AK', pauseMs: 1 });
    sender.start();
    for (let kill = 0; kill < KILLS; kill++) {
      // Vary the moment: after a few hundred more AAs and a little jitter.
      await sender.waitAcked(300 + kill * 50, 20_000);
      await sleep(kill * 37);
      expect((await agent.stop('SIGKILL')).signal).toBe('SIGKILL');
      agent = await restartAgent(fleet.agentOptions, { mllpPorts: { load: mllpPort } });
    }
    await sender.waitAcked(300, 20_000);
    await sender.stop();
    await waitDrained(agent.adminPort, 30_000);

    const t = tally(sender, await fleet.api.listMessages({ agent: fleet.agentId }));
    console.log(formatTally('e2e-crash-agent', t, { kills: KILLS, resent: sender.resent, sender_retries: sender.retries, wall_ms: Date.now() - started }));
    expectExactlyOnce(t);
    // Senders saw the crashes (connections closed, messages sent again).
    expect(sender.resent).toBeGreaterThan(0);
  });

  it(`SIGKILL of the control plane ${KILLS} times under load: every acknowledged message is stored exactly once`, async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-cp-kill-'));
    const fleet = await startFleet(dir, agentOptions(join(dir, 'agent'), [{ id: 'load', type: 'mllp', listen: '127.0.0.1:0' }]));
    cp = fleet.cp;
    agent = await startAgent(fleet.agentOptions);
    const mllpPort = agent.mllpPorts.load!;
    const grpcPort = cp.grpcPort;
    const started = Date.now();
    sender = new LoadSender({ port: () => mllpPort, connections: 8, prefix: 'CK', pauseMs: 1 });
    sender.start();
    for (let kill = 0; kill < KILLS; kill++) {
      await sender.waitAcked(300 + kill * 50, 20_000);
      await sleep(kill * 37);
      expect((await cp.stop('SIGKILL')).signal).toBe('SIGKILL');
      await sleep(100 + kill * 50);
      cp = await startControlPlane({ dataDir: cp.dataDir, grpcPort });
    }
    fleet.api.baseUrl = cp.url;
    await sender.waitAcked(300, 20_000);
    await sender.stop();
    await waitDrained(agent.adminPort, 30_000);

    const t = tally(sender, await fleet.api.listMessages({ agent: fleet.agentId }));
    console.log(formatTally('e2e-crash-control-plane', t, { kills: KILLS, resent: sender.resent, sender_retries: sender.retries, wall_ms: Date.now() - started }));
    expectExactlyOnce(t);
  });
});
