// `enroll` against a tiny local HTTP server that implements the documented answer of
// POST /api/v1/agents/enroll ({"agent_id","secret","grpc_target"}; errors {"error":{"code","message"}}).
// A stand-in: the control plane's real HTTP API is being built at the same time; the end-to-end
// tests with `ferry-control-plane serve` replace this once it exists.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AGENT_MAIN } from '../../test/helpers/agent-process.js';
import { FerryError } from '../errors.js';
import { CREDENTIALS_FILE, enroll, readCredentials, readEnrollmentToken } from './index.js';

const TOKEN = 'fet_' + 'T0KEN'.repeat(8);
const SECRET = 'fas_' + 'S3CRET'.repeat(8);

let dir: string;
let server: Server;
let port: number;
let requests: { method: string; url: string; body: unknown }[];
let answer: { status: number; body: unknown };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-enroll-'));
  requests = [];
  answer = { status: 201, body: { agent_id: 'agt_123', secret: SECRET, grpc_target: '127.0.0.1:50051' } };
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

const url = (): string => `http://127.0.0.1:${port}`;

async function refusal(p: Promise<unknown>): Promise<FerryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FerryError);
  return err as FerryError;
}

describe('enroll', () => {
  it('posts the token and name, and keeps the answer in credentials.json (0600)', async () => {
    const dataDir = join(dir, 'data');
    const r = await enroll({ controlPlaneUrl: url(), token: `${TOKEN}\n`, name: 'site-1', dataDir });
    expect(r).toEqual({ agentId: 'agt_123', credentialsFile: join(dataDir, CREDENTIALS_FILE), grpcTarget: '127.0.0.1:50051' });
    expect(requests).toEqual([{ method: 'POST', url: '/api/v1/agents/enroll', body: { token: TOKEN, name: 'site-1' } }]);
    expect(statSync(r.credentialsFile).mode & 0o777).toBe(0o600);
    expect(readCredentials(dataDir)).toMatchObject({ agent_id: 'agt_123', secret: SECRET, control_plane_url: url(), grpc_target: '127.0.0.1:50051' });
    expect(Date.parse(readCredentials(dataDir)!.enrolled_at)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('keeps the fleet broker URL when the answer carries mqtt_url (an old answer without it leaves it out)', async () => {
    const dataDir = join(dir, 'data');
    await enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir });
    expect(readCredentials(dataDir)!.mqtt_url).toBeUndefined();
    answer = { status: 201, body: { agent_id: 'agt_789', secret: SECRET, grpc_target: '127.0.0.1:50051', mqtt_url: 'mqtts://cp.example.org:8883' } };
    await enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir, force: true });
    expect(readCredentials(dataDir)).toMatchObject({ agent_id: 'agt_789', mqtt_url: 'mqtts://cp.example.org:8883' });
  });

  it('refuses to replace existing credentials without force, before spending the token', async () => {
    const dataDir = join(dir, 'data');
    await enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir });
    const err = await refusal(enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir }));
    expect(err.code).toBe('credentials_exist');
    expect(err.message).toContain('--force');
    expect(requests).toHaveLength(1);
    answer = { status: 201, body: { agent_id: 'agt_456', secret: SECRET, grpc_target: 'cp.example.org:50051' } };
    await enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir, force: true });
    expect(readCredentials(dataDir)).toMatchObject({ agent_id: 'agt_456', grpc_target: 'cp.example.org:50051' });
  });

  it('turns refusals into clear errors carrying the server message, never the token', async () => {
    const cases: [number, string, string][] = [
      [401, 'invalid_token', 'enrollment token is not valid'],
      [403, 'forbidden', 'token may not enroll'],
      [404, 'not_found', 'no such route'],
      [410, 'token_expired', 'enrollment token expired at 2026-01-01T00:00:00Z'],
    ];
    for (const [status, code, message] of cases) {
      answer = { status, body: { error: { code, message } } };
      const err = await refusal(enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir: join(dir, 'd') }));
      expect(err.code, String(status)).toBe('enroll_refused');
      expect(err.message).toContain(`HTTP ${status} ${code}`);
      expect(err.message).toContain(message);
      expect(err.message).not.toContain(TOKEN);
    }
    answer = { status: 410, body: 'gone' };
    expect((await refusal(enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir: join(dir, 'd') }))).message).toContain('expired or has been used up');
    answer = { status: 500, body: { error: { code: 'internal', message: 'boom' } } };
    expect((await refusal(enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir: join(dir, 'd') }))).code).toBe('enroll_failed');
    answer = { status: 201, body: { agent_id: 'x' } };
    expect((await refusal(enroll({ controlPlaneUrl: url(), token: TOKEN, name: 'a', dataDir: join(dir, 'd') }))).message).toContain('without an agent id and secret');
    expect(readCredentials(join(dir, 'd'))).toBeUndefined();
  });

  it('says so when the control plane cannot be reached, or the URL is not one', async () => {
    const closed = `http://127.0.0.1:${port}`;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const err = await refusal(enroll({ controlPlaneUrl: closed, token: TOKEN, name: 'a', dataDir: join(dir, 'd') }));
    expect(err.code).toBe('enroll_unreachable');
    expect(err.message).toContain('ECONNREFUSED');
    expect((await refusal(enroll({ controlPlaneUrl: 'ftp://x', token: TOKEN, name: 'a', dataDir: join(dir, 'd') }))).code).toBe('enroll_failed');
  });

  it('reads the token from a file, standard input or FERRY_ENROLLMENT_TOKEN, and refuses an empty one', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, `  ${TOKEN}\n`);
    expect(await readEnrollmentToken(file, {})).toBe(TOKEN);
    expect(await readEnrollmentToken(undefined, { FERRY_ENROLLMENT_TOKEN: TOKEN })).toBe(TOKEN);
    const { Readable } = await import('node:stream');
    expect(await readEnrollmentToken('-', {}, Readable.from([Buffer.from(TOKEN + '\n')]))).toBe(TOKEN);
    writeFileSync(file, '\n');
    expect((await refusal(readEnrollmentToken(file, {}))).message).toContain('is empty');
    expect((await refusal(readEnrollmentToken(undefined, {}))).message).toContain('--token-file');
  });

  it('ferry-agent enroll (built CLI): token on stdin, prints the agent id and the file, never the token or secret', async () => {
    const dataDir = join(dir, 'cli-data');
    const run = (args: string[], stdin: string, env: NodeJS.ProcessEnv = {}) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [AGENT_MAIN, 'enroll', ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.stdin.end(stdin);
        child.on('exit', (code) => resolve({ code, out }));
      });
    const ok = await run(['--control-plane', url(), '--token-file', '-', '--data-dir', dataDir], TOKEN);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain('enrolled as agent agt_123');
    expect(ok.out).toContain(join(dataDir, CREDENTIALS_FILE));
    expect(ok.out).not.toContain(TOKEN);
    expect(ok.out).not.toContain(SECRET);
    expect(JSON.parse(readFileSync(join(dataDir, CREDENTIALS_FILE), 'utf8'))).toMatchObject({ agent_id: 'agt_123', secret: SECRET });

    answer = { status: 410, body: { error: { code: 'token_used', message: 'this enrollment token has been used' } } };
    const refused = await run(['--control-plane', url(), '--data-dir', join(dir, 'other'), '--name', 'x'], '', { FERRY_ENROLLMENT_TOKEN: TOKEN });
    expect(refused.code).toBe(1);
    expect(refused.out).toContain('this enrollment token has been used');
    expect(refused.out).not.toContain(TOKEN);
    expect((await run(['--token-file', '-'], TOKEN)).code).toBe(2);
  });
});
