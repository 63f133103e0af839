// The built control plane as a real process: serve on port 0, admin token from its file,
// enrollment over real HTTP, a real gRPC Ingest stream with the returned credentials, then the
// message listed and read back byte-identical, the read audited, and SIGTERM exits 0.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_ID_METADATA_KEY, AGENT_SECRET_METADATA_KEY, loadIngestPackage, type AgentFrame, type ControlFrame__Output } from '../proto/index.js';
import { sampleEnvelopes } from './helpers/envelopes.js';

const BUILT = join(process.cwd(), 'dist', 'control-plane', 'main.js');

let dir: string | undefined;
let child: ChildProcessWithoutNullStreams | undefined;

afterEach(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function start(dataDir: string): Promise<{ lines: string[]; http: number; grpc: number; exit: Promise<number | null> }> {
  child = spawn(process.execPath, [BUILT, 'serve', '--data-dir', dataDir, '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { stdio: 'pipe' });
  const lines: string[] = [];
  const exit = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
  let partial = '';
  return new Promise((resolve, reject) => {
    child!.stderr.on('data', (d: Buffer) => lines.push(d.toString('utf8')));
    child!.stdout.on('data', (d: Buffer) => {
      partial += d.toString('utf8');
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        const rec = JSON.parse(line) as { msg: string; http?: { port: number }; grpc?: { port: number } };
        if (rec.msg === 'control plane started') resolve({ lines, http: rec.http!.port, grpc: rec.grpc!.port, exit });
      }
    });
    void exit.then((code) => reject(new Error(`control plane exited ${code} before starting: ${lines.join('\n')}`)));
  });
}

describe('ferry-control-plane serve (built CLI, real sockets)', () => {
  it('enrolls an agent over HTTP, takes a batch over gRPC, lists and serves it byte-identical, audits the read, exits 0 on SIGTERM', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-cp-cli-'));
    const dataDir = join(dir, 'data');
    const cp = await start(dataDir);
    const tokenFile = join(dataDir, 'admin-token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const admin = readFileSync(tokenFile, 'utf8').trim();
    expect(cp.lines.join('\n')).not.toContain(admin);
    expect(cp.lines.join('\n')).toContain(tokenFile);
    const base = `http://127.0.0.1:${cp.http}`;
    const auth = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };

    const tokenRes = await fetch(`${base}/api/v1/enrollment-tokens`, { method: 'POST', headers: auth, body: '{"max_uses":1}' });
    expect(tokenRes.status).toBe(201);
    const { token } = (await tokenRes.json()) as { token: string };
    const enrollRes = await fetch(`${base}/api/v1/agents/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, name: 'cli-test' }) });
    expect(enrollRes.status).toBe(201);
    const creds = (await enrollRes.json()) as { agent_id: string; secret: string; grpc_target: string };
    expect(creds.grpc_target).toBe(`127.0.0.1:${cp.grpc}`);

    const Ingest = loadIngestPackage().ferry.v1.Ingest;
    const client = new Ingest(creds.grpc_target, credentials.createInsecure());
    const md = new Metadata();
    md.set(AGENT_ID_METADATA_KEY, creds.agent_id);
    md.set(AGENT_SECRET_METADATA_KEY, creds.secret);
    const call: ClientDuplexStream<AgentFrame, ControlFrame__Output> = client.Stream(md);
    const frames: ControlFrame__Output[] = [];
    const got = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const check = () => (frames.length >= n ? resolve() : undefined);
        call.on('data', (f: ControlFrame__Output) => {
          frames.push(f);
          check();
        });
        call.on('error', reject);
      });
    const twoFrames = got(2);
    const envelopes = sampleEnvelopes(1, 3);
    call.write({ hello: { agentId: creds.agent_id, bufferId: 'buf-cli', agentVersion: 'test' } });
    call.write({ batch: { envelopes: envelopes.map((e) => ({ seq: e.seq, sourceId: e.sourceId, receivedAtMs: e.receivedAtMs, payload: e.payload, sha256: e.sha256, metadata: { ...e.metadata, size: e.payload.length } })) } });
    await twoFrames;
    expect(frames.map((f) => f.frame)).toEqual(['welcome', 'ack']);
    expect(frames[1]!.ack!.committedSeq).toBe(3);
    const agents = (await (await fetch(`${base}/api/v1/agents`, { headers: auth })).json()) as { items: Array<{ id: string; stream_connected: boolean; committed_seq: Record<string, number> }> };
    expect(agents.items[0]).toMatchObject({ id: creds.agent_id, stream_connected: true, committed_seq: { 'buf-cli': 3 } });
    call.end();
    client.close();

    const list = (await (await fetch(`${base}/api/v1/messages?agent=${creds.agent_id}`, { headers: auth })).json()) as { items: Array<{ id: string; seq: number; sha256: string }> };
    expect(list.items.map((m) => m.seq)).toEqual([1, 2, 3]);
    const payload = await fetch(`${base}/api/v1/messages/${list.items[1]!.id}/payload`, { headers: auth });
    expect(Buffer.from(await payload.arrayBuffer()).equals(envelopes[1]!.payload)).toBe(true);
    const audit = (await (await fetch(`${base}/api/v1/audit?limit=1`, { headers: auth })).json()) as { items: Array<{ action: string; target: string }> };
    expect(audit.items[0]).toMatchObject({ action: 'message.payload.read', target: `message:${list.items[1]!.id}` });

    child!.kill('SIGTERM');
    expect(await cp.exit).toBe(0);
    const logs = cp.lines.join('\n');
    expect(logs).not.toContain(creds.secret);
    expect(logs).not.toContain(token);

    // A later start leaves the admin token alone, and the old one still works.
    const again = await start(dataDir);
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(admin);
    expect(again.lines.join('\n')).not.toContain('first start');
    expect((await fetch(`http://127.0.0.1:${again.http}/api/v1/agents`, { headers: auth })).status).toBe(200);
    child!.kill('SIGTERM');
    expect(await again.exit).toBe(0);
  });
});
