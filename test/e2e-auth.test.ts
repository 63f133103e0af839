// End to end across real processes: what the control plane refuses, and how it shows.
// - An agent with a wrong secret, and a revoked agent: the gRPC stream is refused with
//   UNAUTHENTICATED, /status shows it, MLLP keeps acknowledging and the buffer keeps every message
//   (delivered once the credentials are right again).
// - `ferry-agent enroll` with a one-use token used twice, a revoked token, an expired token: exits
//   non-zero with the control plane's reason, and writes no credentials.
// (No credentials at all on a raw gRPC call is covered by control-plane/ingest tests.)

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, writeAgentConfig, type RunningAgent } from './helpers/agent-process.js';
import { runEnroll, type ControlPlaneProcess } from './helpers/control-plane-process.js';
import { agentOptions, agentStatus, cleanUpProcesses, formatTally, LoadSender, restartAgent, sleep, startFleet, tally, waitDrained, waitFor, type AgentStatus } from './helpers/e2e.js';

let dir: string | undefined;
let agent: RunningAgent | undefined;
let cp: ControlPlaneProcess | undefined;

afterEach(async () => {
  await cleanUpProcesses(agent, cp, dir);
  agent = cp = dir = undefined;
});

async function refusedStatus(adminPort: number): Promise<AgentStatus> {
  let s: AgentStatus | undefined;
  await waitFor(
    async () => {
      s = await agentStatus(adminPort);
      return s.uplink.last_error?.code === 'UNAUTHENTICATED';
    },
    10_000,
    'uplink refused with UNAUTHENTICATED',
  );
  return s!;
}

/** Sends `count` messages on 2 connections and waits for their AAs. */
async function sendBatch(port: number, prefix: string, count: number): Promise<LoadSender> {
  const sender = new LoadSender({ port: () => port, connections: 2, prefix, maxMessages: count });
  sender.start();
  await sender.finish(15_000);
  return sender;
}

describe('end to end: refused credentials and enrollment tokens', () => {
  it('a wrong secret and a revoked agent are refused (UNAUTHENTICATED in /status); the buffer keeps every message', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-auth-'));
    const options = agentOptions(join(dir, 'agent'), [{ id: 'auth', type: 'mllp', listen: '127.0.0.1:0' }]);
    const fleet = await startFleet(dir, options);
    cp = fleet.cp;
    const credsPath = join(options.dir, 'data', 'credentials.json');
    const good = readFileSync(credsPath, 'utf8');
    const creds = JSON.parse(good) as { secret: string };
    writeFileSync(credsPath, JSON.stringify({ ...creds, secret: `${creds.secret.slice(0, -4)}XXXX` }), { mode: 0o600 });

    // Wrong secret.
    agent = await startAgent(options);
    const port = agent.mllpPorts.auth!;
    const wrong = await sendBatch(port, 'WRONG', 40);
    expect(wrong.acked).toBe(40);
    const s1 = await refusedStatus(agent.adminPort);
    expect(s1.uplink.state).toBe('disconnected');
    expect(s1.uplink.pending.count).toBe(40);
    expect(s1.uplink.message).toMatch(/credentials refused/);
    expect(await fleet.api.listMessages({ agent: fleet.agentId })).toEqual([]);
    expect(agent.lines.join('\n')).not.toContain(creds.secret.slice(0, -4));

    // The right secret again: the buffered messages arrive, once.
    await agent.stop('SIGTERM');
    writeFileSync(credsPath, good, { mode: 0o600 });
    agent = await restartAgent(options, { mllpPorts: { auth: port } });
    await waitDrained(agent.adminPort, 15_000);
    const t1 = tally(wrong, await fleet.api.listMessages({ agent: fleet.agentId }));

    // Revoked: the next stream (after a restart) is refused; MLLP still acknowledges into the buffer.
    await fleet.api.revokeAgent(fleet.agentId);
    await agent.stop('SIGTERM');
    agent = await restartAgent(options, { mllpPorts: { auth: port } });
    const revoked = await sendBatch(port, 'REVOKED', 25);
    expect(revoked.acked).toBe(25);
    const s2 = await refusedStatus(agent.adminPort);
    expect(s2.uplink.state).toBe('disconnected');
    expect(s2.uplink.pending.count).toBe(25);
    await sleep(500);
    expect((await agentStatus(agent.adminPort)).uplink.pending.count).toBe(25);
    expect((await fleet.api.listMessages({ agent: fleet.agentId })).filter((m) => m.control_id.startsWith('REVOKED'))).toEqual([]);

    console.log(formatTally('e2e-auth-wrong-secret', t1, { refused_with: s1.uplink.last_error!.code, buffered_while_refused: s1.uplink.pending.count }));
    console.log(`[e2e-auth-revoked] sent=25 acknowledged=${revoked.acked} buffered=${s2.uplink.pending.count} stored=0 refused_with=${s2.uplink.last_error!.code}`);
    expect(t1).toMatchObject({ sent: 40, acknowledged: 40, stored: 40, lost: 0, duplicated: 0, corrupt: 0, outOfOrder: 0 });
  });

  it('enroll with a reused one-use token, a revoked token or an expired token: non-zero exit with the reason, no credentials', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-enroll-'));
    const fleet = await startFleet(dir, agentOptions(join(dir, 'first'), [{ id: 'x', type: 'mllp', listen: '127.0.0.1:0' }]));
    cp = fleet.cp;
    const configFor = (name: string): string => writeAgentConfig(agentOptions(join(dir!, name), [{ id: 'x', type: 'mllp', listen: '127.0.0.1:0' }]));

    // One use: the first enroll succeeds, the second is refused.
    const once = await fleet.api.createEnrollmentToken({ max_uses: 1 });
    expect((await runEnroll(cp.url, once.token, configFor('once-1'))).code).toBe(0);
    const reused = await runEnroll(cp.url, once.token, configFor('once-2'));

    const revokedToken = await fleet.api.createEnrollmentToken({ max_uses: 5 });
    await fleet.api.revokeEnrollmentToken(revokedToken.id);
    const revoked = await runEnroll(cp.url, revokedToken.token, configFor('revoked'));

    const shortLived = await fleet.api.createEnrollmentToken({ expires_in_secs: 1 });
    await sleep(1500);
    const expired = await runEnroll(cp.url, shortLived.token, configFor('expired'));

    const unknown = await runEnroll(cp.url, 'fet_not-a-token-at-all-0000000000000000', configFor('unknown'));

    const results = { reused, revoked, expired, unknown };
    console.log(`[e2e-auth-enroll] ${Object.entries(results).map(([k, r]) => `${k}: exit ${r.code} "${r.stderr.trim().split('\n')[0]}"`).join('; ')}`);
    expect(reused.code).not.toBe(0);
    expect(reused.stderr).toMatch(/enrollment_token_used_up|used up/i);
    expect(revoked.code).not.toBe(0);
    expect(revoked.stderr).toMatch(/enrollment_token_revoked|revoked/i);
    expect(expired.code).not.toBe(0);
    expect(expired.stderr).toMatch(/enrollment_token_expired|expired/i);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/enrollment_token_invalid|invalid|unknown/i);
    for (const name of ['once-2', 'revoked', 'expired', 'unknown']) expect(existsSync(join(dir, name, 'data', 'credentials.json')), name).toBe(false);
    for (const r of Object.values(results)) expect(r.stderr).not.toContain(once.token);
  });
});
