// The built agent (`ferry-agent run`) with credentials in its data directory delivers what it
// acknowledges over MLLP to a real gRPC ingest (the control plane's dev-server runner): wiring,
// status document, readiness while the control plane is down, and a clean SIGTERM.

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { startAgent, type RunningAgent } from './helpers/agent-process.js';
import { readControlPlaneRows, startIngestServer, type IngestServerProcess } from './helpers/ingest-server-process.js';
import { realisticMessage } from './helpers/messages.js';
import { controlId, waitFor } from './helpers/mllp-harness.js';

let dir: string | undefined;
let agent: RunningAgent | undefined;
let server: IngestServerProcess | undefined;

afterEach(async () => {
  await agent?.stop('SIGKILL');
  await server?.stop('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
  agent = server = dir = undefined;
});

async function status(port: number, path = '/status'): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { code: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function sendAll(port: number, first: number, count: number): Promise<string[]> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    const codes: string[] = [];
    for (let n = first; n < first + count; n++) codes.push(readAck(await client.send(realisticMessage('E', n))).code);
    return codes;
  } finally {
    await client.close();
  }
}

describe('ferry-agent run with an uplink', () => {
  it('delivers acknowledged MLLP messages, keeps acknowledging while the control plane is down, reports the uplink in /status and /readyz', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-agent-uplink-'));
    server = await startIngestServer({ dataDir: join(dir, 'cp') });
    const port = server.port;
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      join(dataDir, 'credentials.json'),
      JSON.stringify({ agent_id: server.agentId, secret: server.secret, control_plane_url: 'http://127.0.0.1:1', grpc_target: `127.0.0.1:${port}`, enrolled_at: new Date().toISOString() }),
      { mode: 0o600 },
    );
    agent = await startAgent({ dir, config: { uplink: { retry_initial_delay_secs: 0.1, retry_max_delay_secs: 0.5 } } });
    const mllp = agent.mllpPorts.test!;

    expect(await Promise.all([sendAll(mllp, 1, 50), sendAll(mllp, 51, 50)])).toEqual([Array(50).fill('AA'), Array(50).fill('AA')]);
    await waitFor(async () => ((await status(agent!.adminPort)).body.buffer as { depth: number }).depth === 0, 10_000, 'delivered');
    const s = (await status(agent.adminPort)).body;
    expect(s.uplink).toMatchObject({ state: 'connected', target: `127.0.0.1:${port}`, tls: false, committed_seq: 100, pending: { count: 0, bytes: 0 }, last_error: null });

    // Control plane down: still ready, still acknowledging, the backlog is reported.
    await server.stop('SIGKILL');
    await waitFor(async () => ((await status(agent!.adminPort)).body.uplink as { state: string }).state !== 'connected', 5000, 'outage noticed');
    expect(await sendAll(mllp, 101, 30)).toEqual(Array(30).fill('AA'));
    const ready = await status(agent.adminPort, '/readyz');
    expect(ready.code).toBe(200);
    expect(ready.body.warnings).toEqual([expect.stringContaining('uplink is')]);
    const down = (await status(agent.adminPort)).body.uplink as { pending: { count: number; oldest_age_secs: number }; last_error: { code: string } };
    expect(down.pending.count).toBe(30);
    expect(down.pending.oldest_age_secs).toBeGreaterThanOrEqual(0);
    expect(down.last_error.code).toBe('UNAVAILABLE');

    server = await startIngestServer({ dataDir: join(dir, 'cp'), port });
    await waitFor(async () => ((await status(agent!.adminPort)).body.buffer as { depth: number }).depth === 0, 10_000, 'backlog delivered');
    const rows = await readControlPlaneRows(server.dataDir);
    // Once each (two connections interleave, so compare as sets), stored in seq order.
    expect(rows).toHaveLength(130);
    expect(new Set(rows.map((r) => r.controlId))).toEqual(new Set(Array.from({ length: 130 }, (_, i) => controlId('E', i + 1))));
    expect(rows.map((r) => r.seq)).toEqual([...rows.map((r) => r.seq)].sort((a, b) => a - b));
    for (const r of rows) expect(r.sha256).toBe(createHash('sha256').update(realisticMessage('E', Number(r.controlId.slice(1)))).digest('hex'));

    const metrics = await (await fetch(`http://127.0.0.1:${agent.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^ferry_uplink_messages_acked_total 130$/m);
    expect(metrics).toMatch(/^ferry_uplink_connected 1$/m);
    expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const logs = agent.lines.join('\n');
    expect(logs).toContain('uplink stopped');
    expect(logs).not.toContain(server.secret);
  });
});
