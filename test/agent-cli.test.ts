// The ferry-agent command line and admin HTTP, over real processes and sockets: every test spawns
// the built CLI (dist/agent/main.js) and talks to it the way an operator or a sender would.
//
//   - admin HTTP: /livez, /readyz, /status, /metrics after good and refused frames, 404s, and
//     /readyz going 503 when the buffer is full (AR ERR 207, alert buffer_full);
//   - `status` (human, --json, --config, a closed port), `validate`, usage and `version`;
//   - `rotate-key` on a stopped agent and on a running one (SIGHUP): new rows carry the new key id,
//     old rows keep theirs, no key material on stdout, and `check --json` passes afterwards;
//   - graceful shutdown on SIGTERM and SIGINT with pipelined frames in flight on 4 connections
//     (every AA'd frame stored, nothing stored that was not answered, exit 0), and a second signal
//     during a shutdown held up by a half-open connection exiting at once with 130;
//   - no message content in the logs at log_level trace, refused frames included.
//
// The groups are independent (each has its own agent and temp directory) and run concurrently.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { all, close, openDatabase } from '../agent/buffer/sqlite.js';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { frame } from '../agent/sources/mllp/decoder.js';
import { AGENT_MAIN, REPO_ROOT, runAgentCli, startAgent, type CliResult, type RunningAgent } from './helpers/agent-process.js';
import { readBufferRows } from './helpers/buffer-db.js';
import { realisticMessage } from './helpers/messages.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const CANARY_NAME = 'CANARYZX^QUOKKA';

// ---------------------------------------------------------------------------------------------
// helpers

const root = mkdtempSync(join(tmpdir(), 'ferry-cli-'));
const running = new Set<RunningAgent>();
let failures = 0;

afterAll(async () => {
  for (const a of running) await a.stop('SIGKILL');
  if (failures === 0) rmSync(root, { recursive: true, force: true });
  else console.log(`agent-cli test data kept for inspection in ${root}`);
});

/** Runs `it.concurrent`, remembering failures so the temp directory is kept for inspection. */
function test(name: string, fn: () => Promise<void>, timeoutMs = 30_000): void {
  it.concurrent(
    name,
    async () => {
      try {
        await fn();
      } catch (err) {
        failures++;
        throw err;
      }
    },
    timeoutMs,
  );
}

function tempDir(name: string): string {
  return mkdtempSync(join(root, `${name}-`));
}

async function launch(options: Parameters<typeof startAgent>[0]): Promise<RunningAgent> {
  const agent = await startAgent(options);
  running.add(agent);
  void agent.exited.then(() => running.delete(agent));
  return agent;
}

/** Runs `ferry-agent ARGS...` to completion (never throws on a non-zero exit). */
function cli(args: readonly string[], timeoutMs = 15_000): Promise<CliResult> {
  return runAgentCli(args, timeoutMs);
}

async function http(port: number, path: string): Promise<{ status: number; contentType: string; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

async function httpJson(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await http(port, path);
  expect(r.contentType, `${path} content-type`).toMatch(/^application\/json/);
  return { status: r.status, body: JSON.parse(r.text) as Record<string, unknown> };
}

/** One sample value from Prometheus text: the line named `name` whose labels include `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches: number[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) matches.push(Number(m[3]));
  }
  if (matches.length > 1) throw new Error(`${name}${JSON.stringify(labels)} matches ${matches.length} series; be more specific`);
  return matches[0];
}

async function sendAll(port: number, messages: readonly Buffer[]): Promise<{ code: string; controlId: string; errorCode?: string }[]> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    const out = [];
    for (const m of messages) out.push(readAck(await client.send(m)));
    return out;
  } finally {
    await client.close();
  }
}

function controlIdOf(prefix: string, n: number): string {
  return `${prefix}${String(n).padStart(10, '0')}`;
}

/** An ADT whose MSH-10 is empty (AE, ERR 101), carrying the patient name given. */
function withoutControlId(patientName: string): Buffer {
  return Buffer.from(`MSH|^~\\&|EPIC|CITYHOSP|FERRY|CENTRAL|20261125081500||ADT^A01^ADT_A01||P|2.5.1\rEVN|A01|20261125081500\rPID|1||MRN1^^^CITYHOSP^MR||${patientName}||19800214|F\r`, 'latin1');
}

/** A realistic message padded with NTE segments to at least `bytes` (for max_message_bytes). */
function oversized(controlId: string, bytes: number, patientName: string): Buffer {
  const base = realisticMessage('', 0, { patientName }).toString('latin1').replace('|0000000000|', `|${controlId}|`);
  let text = base;
  for (let i = 1; text.length < bytes; i++) text += `NTE|${i}|L|Free text about ${patientName}: ${'x'.repeat(200)}\r`;
  return Buffer.from(text, 'latin1');
}

async function waitForLine(agent: RunningAgent, predicate: (entry: Record<string, unknown>) => boolean, timeoutMs = 5000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of agent.lines) {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (predicate(entry)) return entry;
      } catch {
        // not a JSON line
      }
    }
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms:\n${agent.lines.join('\n')}`);
    await sleep(20);
  }
}

function logEntries(agent: RunningAgent): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of agent.lines) {
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not JSON: counted by the caller when it matters
    }
  }
  return out;
}

/** seq, key_id and control_id of every row, read-only with the sqlite3 package. */
async function rowKeys(bufferFile: string): Promise<{ seq: number; key_id: string; control_id: string }[]> {
  const db = await openDatabase(bufferFile, true);
  try {
    return await all<{ seq: number; key_id: string; control_id: string }>(db, 'SELECT seq, key_id, control_id FROM messages ORDER BY seq');
  } finally {
    await close(db);
  }
}

interface KeyFileJson {
  version: number;
  active: string;
  keys: { id: string; key: string; created_at: string }[];
}

function readKeyFile(path: string): KeyFileJson {
  return JSON.parse(readFileSync(path, 'utf8')) as KeyFileJson;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------------------------

describe('ferry-agent CLI and admin HTTP (real processes)', () => {
  it('has a built CLI to test', () => {
    expect(existsSync(AGENT_MAIN), `${AGENT_MAIN} is missing: run "npx tsc -p ." first`).toBe(true);
  });

  test('usage, version and unknown commands', async () => {
    const [none, version, help, unknown] = await Promise.all([cli([]), cli(['version']), cli(['--help']), cli(['frobnicate'])]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain('Usage:');
    for (const cmd of ['run', 'validate', 'status', 'check', 'rotate-key', 'send', 'version']) expect(none.stdout).toContain(`ferry-agent ${cmd}`);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${PACKAGE_VERSION}\n`);
    expect(version.stderr).toBe('');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage:');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  test('validate: a good file names its sources; a bad one lists every problem by path; usage errors exit 2', async () => {
    const dir = tempDir('validate');
    const good = join(dir, 'good.yaml');
    writeFileSync(
      good,
      stringify({
        data_dir: join(dir, 'data'),
        admin: { listen: '127.0.0.1:9575' },
        buffer: { max_bytes: '1GiB' },
        sources: [
          { id: 'adt-main', type: 'mllp', listen: '0.0.0.0:2575', max_connections: 64, allow_ips: ['10.0.0.0/8', '192.168.1.7'] },
          { id: 'lab.results', type: 'mllp', listen: '[::]:2576', max_message_bytes: '1MiB' },
        ],
      }),
    );
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      stringify({
        data_dir: join(dir, 'data'),
        sources: [
          { id: 'adt-main', type: 'mllp', listen: 'localhost', max_connections: -5 },
          { id: 'lab', type: 'mllp', listen: '127.0.0.1:2576', max_conections: 10, allow_ips: ['10.0.0.0/8', '10.1.2.300'] },
        ],
      }),
    );
    const [ok, notOk, missing, unreadable] = await Promise.all([
      cli(['validate', '--config', good]),
      cli(['validate', '--config', bad]),
      cli(['validate']),
      cli(['validate', '--config', join(dir, 'nope.yaml')]),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${good} is valid`);
    expect(ok.stdout).toContain('2 source(s)');
    expect(ok.stdout).toContain('adt-main (mllp 0.0.0.0:2575)');
    expect(ok.stdout).toContain('lab.results (mllp [::]:2576)');

    expect(notOk.code).toBe(1);
    expect(notOk.stdout).toBe('');
    expect(notOk.stderr).toContain(`${bad} is invalid (4 problems)`);
    const problems = notOk.stderr.split('\n').filter((l) => l.startsWith('  '));
    expect(problems).toHaveLength(4);
    expect(notOk.stderr).toContain('  sources[0].listen: must be host:port');
    expect(notOk.stderr).toMatch(/ {2}sources\[0\]\.max_connections: .*>0/);
    expect(notOk.stderr).toContain('  sources[1].allow_ips[1]: must be an IP address or CIDR block');
    expect(notOk.stderr).toMatch(/ {2}sources\[1\]: Unrecognized key: "max_conections"/);

    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('validate needs --config FILE');
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toContain('cannot read config file');
    expect(unreadable.stderr).toContain('ENOENT');
  });

  test('admin HTTP, metrics and the status command of a running agent', async () => {
    const dir = tempDir('admin');
    const source = 'adt-main';
    const agent = await launch({
      dir,
      sources: [{ id: source, type: 'mllp', listen: '127.0.0.1:0', max_message_bytes: '4KiB' }],
      config: { buffer: { max_bytes: '64MiB' } },
    });
    const port = agent.mllpPorts[source]!;
    expect(port).toBeGreaterThan(0);

    const livez = await httpJson(agent.adminPort, '/livez');
    expect(livez).toEqual({ status: 200, body: { status: 'ok' } });
    const readyz = await httpJson(agent.adminPort, '/readyz');
    expect(readyz).toEqual({ status: 200, body: { status: 'ready', reasons: [], warnings: [] } });

    const empty = (await httpJson(agent.adminPort, '/status')).body;
    expect(empty.version).toBe(PACKAGE_VERSION);
    expect(empty.state).toBe('running');
    expect(empty.buffer).toMatchObject({ depth: 0, bytes: 0, max_bytes: 64 * 1024 * 1024, full: false, oldest_pending_age_secs: null, last_seq: 0 });
    expect(empty.alerts).toEqual([]);
    // Not enrolled: the uplink is off, the status says how to enroll, the agent is still ready.
    expect(empty.uplink).toMatchObject({ state: 'disabled', pending: { count: 0, bytes: 0, oldest_age_secs: null }, last_error: null });
    expect(String((empty.uplink as { message: string }).message)).toContain('ferry-agent enroll');

    // 10 good messages on one connection, then an empty MSH-10 and an oversized frame on another.
    const good = Array.from({ length: 10 }, (_, i) => realisticMessage('ADM', i));
    const acks = await sendAll(port, good);
    expect(acks.map((a) => a.code)).toEqual(Array(10).fill('AA'));
    expect(acks.map((a) => a.controlId)).toEqual(good.map((_, i) => controlIdOf('ADM', i)));
    const refused = await sendAll(port, [withoutControlId('DOE^JANE'), oversized('ADMBIG1', 10_000, 'DOE^JANE')]);
    expect(refused[0]).toEqual({ code: 'AE', controlId: '', errorCode: '101' });
    expect(refused[1]).toEqual({ code: 'AR', controlId: 'ADMBIG1', errorCode: '104' });

    // The agent notices the two closed connections a moment after the client does.
    let status = (await httpJson(agent.adminPort, '/status')).body;
    for (let i = 0; i < 100 && (status.sources as { counters: { connections: number } }[])[0]!.counters.connections !== 0; i++) {
      await sleep(20);
      status = (await httpJson(agent.adminPort, '/status')).body;
    }
    const goodBytes = good.reduce((n, m) => n + m.length, 0);
    expect(status.version).toBe(PACKAGE_VERSION);
    const buffer = status.buffer as Record<string, unknown>;
    expect(buffer).toMatchObject({ depth: 10, bytes: goodBytes, max_bytes: 64 * 1024 * 1024, full: false, last_seq: 10 });
    expect(buffer.buffer_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof buffer.oldest_pending_age_secs).toBe('number');
    expect(buffer.oldest_pending_age_secs as number).toBeGreaterThanOrEqual(0);
    expect(buffer.oldest_pending_age_secs as number).toBeLessThan(60);
    expect(status.alerts).toEqual([]);
    const sources = status.sources as Record<string, unknown>[];
    expect(sources).toHaveLength(1);
    expect(sources[0]).toMatchObject({
      id: source,
      type: 'mllp',
      listen: { host: '127.0.0.1', port },
      health: { state: 'running' },
      counters: { connections: 0, connectionsTotal: 2, messagesAcked: 10, framesRejected: 2, duplicates: 0 },
    });

    const m = await http(agent.adminPort, '/metrics');
    expect(m.status).toBe(200);
    expect(m.contentType).toMatch(/^text\/plain/);
    const s = { source };
    expect(metric(m.text, 'ferry_messages_received_total', s)).toBe(10);
    expect(metric(m.text, 'ferry_messages_acked_total', s)).toBe(10);
    expect(metric(m.text, 'ferry_received_bytes_total', s)).toBe(goodBytes);
    expect(metric(m.text, 'ferry_frames_rejected_total', { source, code: '101' })).toBe(1);
    expect(metric(m.text, 'ferry_frames_rejected_total', { source, code: '104' })).toBe(1);
    expect(metric(m.text, 'ferry_frames_rejected_total', { source, code: '207' })).toBeUndefined();
    expect(metric(m.text, 'ferry_mllp_responses_total', { source, code: 'AA' })).toBe(10);
    expect(metric(m.text, 'ferry_mllp_responses_total', { source, code: 'AE' })).toBe(1);
    expect(metric(m.text, 'ferry_mllp_responses_total', { source, code: 'AR' })).toBe(1);
    expect(metric(m.text, 'ferry_buffer_messages')).toBe(10);
    expect(metric(m.text, 'ferry_buffer_bytes')).toBe(goodBytes);
    expect(metric(m.text, 'ferry_buffer_full')).toBe(0);
    expect(m.text).toContain('# TYPE ferry_buffer_commit_seconds histogram');
    const commits = metric(m.text, 'ferry_buffer_commit_seconds_count')!;
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThanOrEqual(10);
    expect(metric(m.text, 'ferry_buffer_commit_seconds_bucket', { le: '+Inf' })).toBe(commits);
    expect(metric(m.text, 'ferry_buffer_commit_messages_sum')).toBe(10);

    const notFound = await httpJson(agent.adminPort, '/nope');
    expect(notFound.status).toBe(404);
    expect(notFound.body).toEqual({ error: { code: 'not_found', message: expect.any(String) } });

    // The status command: human, --json, from a config file naming the admin port, a closed port.
    const admin = `http://127.0.0.1:${agent.adminPort}`;
    const statusConfig = join(dir, 'status.yaml');
    writeFileSync(statusConfig, stringify({ data_dir: join(dir, 'data'), admin: { listen: `127.0.0.1:${agent.adminPort}` } }));
    const dead = await closedPort();
    const [human, json, fromConfig, trailingSlash, closedRun] = await Promise.all([
      cli(['status', '--admin', admin]),
      cli(['status', '--admin', admin, '--json']),
      cli(['status', '--config', statusConfig]),
      cli(['status', '--admin', `${admin}/`]),
      cli(['status', '--admin', `http://127.0.0.1:${dead}`]),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`ferry-agent ${PACKAGE_VERSION}  running`);
    expect(human.stdout).toContain(`buffer ${String(buffer.buffer_id)}: 10 messages, ${goodBytes} of ${64 * 1024 * 1024} bytes`);
    expect(human.stdout).toContain('last seq 10');
    expect(human.stdout).toContain(`source ${source} (mllp 127.0.0.1:${port}): running; 0 connections, 10 acked, 2 refused, 0 duplicates`);
    expect(human.stdout).not.toContain('FULL');
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(parsed.version).toBe(PACKAGE_VERSION);
    expect(parsed.buffer).toMatchObject({ buffer_id: buffer.buffer_id, depth: 10, bytes: goodBytes, last_seq: 10, full: false });
    expect((parsed.sources as Record<string, unknown>[])[0]).toMatchObject({ id: source, counters: { messagesAcked: 10, framesRejected: 2 } });
    expect(fromConfig.code, fromConfig.stderr).toBe(0);
    expect(fromConfig.stdout).toContain(`source ${source} (mllp 127.0.0.1:${port}): running`);
    expect(fromConfig.stdout).toContain('10 acked');
    expect(trailingSlash.code, trailingSlash.stderr).toBe(0);
    expect(trailingSlash.stdout).toContain('10 acked');
    expect(closedRun.code).toBe(1);
    expect(closedRun.stdout).toBe('');
    expect(closedRun.stderr).toContain(`no agent answered at http://127.0.0.1:${dead}/status`);

    expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  test('a full buffer: AR with ERR 207, /readyz 503 with the reason, status full with alert buffer_full', async () => {
    const dir = tempDir('full');
    const maxBytes = 4000;
    const agent = await launch({ dir, sources: [{ id: 'tiny', type: 'mllp', listen: '127.0.0.1:0' }], config: { buffer: { max_bytes: maxBytes } } });
    const messages = Array.from({ length: 6 }, (_, i) => realisticMessage('FULL', i));
    // Exactly the messages that fit under max_bytes are accepted; the first that does not is refused.
    let fit = 0;
    for (let total = 0; fit < messages.length && total + messages[fit]!.length <= maxBytes; fit++) total += messages[fit]!.length;
    expect(fit).toBeGreaterThanOrEqual(1);
    expect(fit).toBeLessThan(messages.length);
    const client = await MllpClient.connect({ host: '127.0.0.1', port: agent.mllpPorts.tiny!, responseTimeoutMs: 10_000 });
    const acks = [];
    for (let i = 0; i <= fit; i++) acks.push(readAck(await client.send(messages[i]!)));
    await client.close();
    expect(acks.slice(0, fit).map((a) => a.code)).toEqual(Array(fit).fill('AA'));
    expect(acks[fit]).toEqual({ code: 'AR', controlId: controlIdOf('FULL', fit), errorCode: '207' });

    const readyz = await httpJson(agent.adminPort, '/readyz');
    expect(readyz.status).toBe(503);
    expect(readyz.body.status).toBe('not_ready');
    expect(readyz.body.reasons).toEqual([expect.stringContaining('buffer is full')]);
    const livez = await httpJson(agent.adminPort, '/livez');
    expect(livez.status).toBe(200);
    const status = (await httpJson(agent.adminPort, '/status')).body;
    expect(status.buffer).toMatchObject({ depth: fit, full: true, max_bytes: maxBytes, last_seq: fit });
    expect(status.alerts).toEqual(['buffer_full']);
    const m = (await http(agent.adminPort, '/metrics')).text;
    expect(metric(m, 'ferry_buffer_full')).toBe(1);
    expect(metric(m, 'ferry_frames_rejected_total', { source: 'tiny', code: '207' })).toBe(1);
    expect(metric(m, 'ferry_messages_acked_total', { source: 'tiny' })).toBe(fit);
    const human = await cli(['status', '--admin', `http://127.0.0.1:${agent.adminPort}`]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('FULL: new messages are refused');
    expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect((await readBufferRows(join(dir, 'data', 'buffer.db'))).map((r) => r.controlId)).toEqual(messages.slice(0, fit).map((_, i) => controlIdOf('FULL', i)));
  });

  test(
    'rotate-key on a stopped agent and on a running one (SIGHUP); check passes afterwards',
    async () => {
      const dir = tempDir('rotate');
      const dataDir = join(dir, 'data');
      const keyFile = join(dataDir, 'buffer-keys.json');
      const bufferFile = join(dataDir, 'buffer.db');
      const sources = [{ id: 'rot', type: 'mllp', listen: '127.0.0.1:0' }];

      // First run: rows under the key created on first start.
      let agent = await launch({ dir, sources });
      expect((await sendAll(agent.mllpPorts.rot!, [0, 1, 2].map((i) => realisticMessage('ROT', i)))).map((a) => a.code)).toEqual(['AA', 'AA', 'AA']);
      expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      const first = readKeyFile(keyFile);
      expect(first.keys).toHaveLength(1);
      const key1 = first.active;

      // Rotate while stopped.
      const rotated = await cli(['rotate-key', '--data-dir', dataDir]);
      expect(rotated.code, rotated.stderr).toBe(0);
      const afterRotate = readKeyFile(keyFile);
      expect(afterRotate.keys).toHaveLength(2);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const key2 = afterRotate.active;
      expect(key2).not.toBe(key1);
      expect(afterRotate.keys.map((k) => k.id)).toEqual([key1, key2]);
      expect(afterRotate.keys[0]).toEqual(first.keys[0]); // the old key is kept unchanged
      expect(rotated.stdout).toContain(`new active key ${key2}`);
      expect(rotated.stdout).toContain('2 keys');
      for (const k of afterRotate.keys) {
        expect(rotated.stdout).not.toContain(k.key);
        expect(rotated.stderr).not.toContain(k.key);
        expect(rotated.stdout).not.toContain(Buffer.from(k.key, 'base64').toString('hex'));
      }

      // Second run: new rows under key2, old rows keep key1.
      agent = await launch({ dir, sources });
      expect((await waitForLine(agent, (e) => e.msg === 'buffer open')).key_id).toBe(key2);
      expect((await sendAll(agent.mllpPorts.rot!, [3, 4, 5].map((i) => realisticMessage('ROT', i)))).map((a) => a.code)).toEqual(['AA', 'AA', 'AA']);

      // Rotate while running: until SIGHUP the agent keeps sealing with key2, afterwards with key3.
      const rotatedLive = await cli(['rotate-key', '--data-dir', dataDir]);
      expect(rotatedLive.code, rotatedLive.stderr).toBe(0);
      const live = readKeyFile(keyFile);
      const key3 = live.active;
      expect(live.keys.map((k) => k.id)).toEqual([key1, key2, key3]);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      expect(rotatedLive.stdout).toContain(`new active key ${key3}`);
      for (const k of live.keys) expect(rotatedLive.stdout).not.toContain(k.key);
      expect((await sendAll(agent.mllpPorts.rot!, [realisticMessage('ROT', 6)])).map((a) => a.code)).toEqual(['AA']);
      process.kill(agent.child.pid!, 'SIGHUP');
      expect((await waitForLine(agent, (e) => e.msg === 'key file reloaded; new messages are sealed with the active key')).key_id).toBe(key3);
      expect((await sendAll(agent.mllpPorts.rot!, [7, 8].map((i) => realisticMessage('ROT', i)))).map((a) => a.code)).toEqual(['AA', 'AA']);
      expect(agent.child.exitCode).toBeNull(); // SIGHUP reloads, it does not stop the agent

      const rows = await rowKeys(bufferFile);
      expect(rows.map((r) => [r.seq, r.control_id, r.key_id])).toEqual([
        [1, controlIdOf('ROT', 0), key1],
        [2, controlIdOf('ROT', 1), key1],
        [3, controlIdOf('ROT', 2), key1],
        [4, controlIdOf('ROT', 3), key2],
        [5, controlIdOf('ROT', 4), key2],
        [6, controlIdOf('ROT', 5), key2],
        [7, controlIdOf('ROT', 6), key2],
        [8, controlIdOf('ROT', 7), key3],
        [9, controlIdOf('ROT', 8), key3],
      ]);
      expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      for (const line of agent.lines) for (const k of live.keys) expect(line).not.toContain(k.key);

      const [checkJson, checkHuman] = await Promise.all([cli(['check', '--data-dir', dataDir, '--json']), cli(['check', '--data-dir', dataDir])]);
      expect(checkJson.code, checkJson.stderr).toBe(0);
      expect(JSON.parse(checkJson.stdout)).toEqual({ ok: true, sqliteIntegrity: 'ok', rows: 9, failures: [], keyIds: [key1, key2, key3] });
      expect(checkHuman.code).toBe(0);
      expect(checkHuman.stdout).toContain('rows checked: 9');
      expect(checkHuman.stdout).toContain('buffer OK');
      for (const k of live.keys) expect(checkJson.stdout + checkHuman.stdout).not.toContain(k.key);
    },
    40_000,
  );

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} with pipelined frames in flight on 4 connections: every AA stored, nothing else stored, exit 0`, async () => {
      const dir = tempDir(`stop-${signal}`);
      const shutdownTimeoutSecs = 10;
      const agent = await launch({ dir, sources: [{ id: 'drain', type: 'mllp', listen: '127.0.0.1:0' }], config: { shutdown_timeout_secs: shutdownTimeoutSecs } });
      const CONNECTIONS = 4;
      const WINDOW = 8;
      const SIGNAL_AFTER_ACKS = 80;
      const MAX_PER_CONNECTION = 3000;
      interface Sent {
        readonly id: string;
        readonly beforeSignal: boolean;
        response?: { code: string; controlId: string; errorCode?: string };
        ackedAfterSignal?: boolean;
        error?: string;
      }
      const sent: Sent[][] = Array.from({ length: CONNECTIONS }, () => []);
      let acked = 0;
      let signalledAt = 0;
      let inFlightAtSignal = 0;
      let outstanding = 0;
      let fire: () => void = () => {};
      const readyToSignal = new Promise<void>((r) => (fire = r));

      const pump = async (c: number): Promise<void> => {
        const client = await MllpClient.connect({ host: '127.0.0.1', port: agent.mllpPorts.drain!, responseTimeoutMs: 15_000 });
        const inflight = new Set<Promise<void>>();
        let closed = false;
        for (let n = 0; !closed && n < MAX_PER_CONNECTION; ) {
          while (!closed && inflight.size < WINDOW && n < MAX_PER_CONNECTION) {
            const record: Sent = { id: `D${c}-${signal}-${String(n).padStart(6, '0')}`, beforeSignal: signalledAt === 0 };
            const payload = realisticMessage('', 0).toString('latin1').replace('|0000000000|', `|${record.id}|`);
            sent[c]!.push(record);
            n++;
            outstanding++;
            const p = client.send(Buffer.from(payload, 'latin1')).then(
              (response) => {
                record.response = readAck(response);
                record.ackedAfterSignal = signalledAt !== 0;
                if (++acked >= SIGNAL_AFTER_ACKS) fire();
              },
              (err: unknown) => {
                record.error = (err as Error).message;
                closed = true;
              },
            );
            const tracked = p.finally(() => {
              outstanding--;
              inflight.delete(tracked);
            });
            inflight.add(tracked);
          }
          await Promise.race(inflight);
        }
        await Promise.allSettled([...inflight]);
        await client.close();
      };
      const pumps = Array.from({ length: CONNECTIONS }, (_, c) => pump(c));
      await readyToSignal;
      signalledAt = Date.now();
      inFlightAtSignal = outstanding;
      process.kill(agent.child.pid!, signal);
      await Promise.all(pumps);
      const exit = await agent.exited;
      const elapsed = Date.now() - signalledAt;

      expect(exit).toEqual({ code: 0, signal: null });
      // Drained, not held until the deadline: a sender that keeps writing after the agent's FIN
      // used to keep the connection open (paused socket, FIN never seen) for shutdown_timeout_secs.
      expect(elapsed).toBeLessThan((shutdownTimeoutSecs - 2) * 1000);
      expect(inFlightAtSignal).toBeGreaterThanOrEqual(CONNECTIONS); // frames really were in flight
      const entries = logEntries(agent);
      expect(entries.some((e) => e.msg === 'shutdown requested' && e.signal === signal)).toBe(true);
      expect(entries.some((e) => e.msg === 'agent stopped cleanly')).toBe(true);
      expect(entries.filter((e) => e.level === 'error' || e.level === 'fatal')).toEqual([]);

      const all = sent.flat();
      const aa = all.filter((s) => s.response);
      for (const s of all) {
        if (s.response) {
          // Every response is the AA of its own frame; nothing is refused during a graceful stop.
          expect(s.response, s.id).toEqual({ code: 'AA', controlId: s.id });
        } else {
          // No response: the connection was closed (never a response timeout).
          expect(s.error, s.id).toMatch(/connection closed by peer|ECONNRESET|EPIPE/);
        }
      }
      // Per connection, the answered frames are a prefix: no response is skipped.
      for (const conn of sent) {
        const firstUnanswered = conn.findIndex((s) => !s.response);
        if (firstUnanswered >= 0) expect(conn.slice(firstUnanswered).filter((s) => s.response)).toEqual([]);
        expect(conn.filter((s) => s.response).length).toBeGreaterThan(0);
      }
      expect(aa.length).toBeGreaterThanOrEqual(SIGNAL_AFTER_ACKS);
      // Frames in flight when the signal went were answered during the stop, not dropped.
      expect(aa.filter((s) => s.beforeSignal && s.ackedAfterSignal).length).toBeGreaterThan(0);
      // Stored: exactly the AA'd frames, each once (frames read before the stop were all answered).
      const rows = await readBufferRows(join(dir, 'data', 'buffer.db'));
      expect(rows.map((r) => r.controlId).sort()).toEqual(aa.map((s) => s.id).sort());
      expect(new Set(rows.map((r) => r.seq)).size).toBe(rows.length);
      const check = await cli(['check', '--data-dir', join(dir, 'data'), '--json']);
      expect(check.code).toBe(0);
      expect(JSON.parse(check.stdout)).toMatchObject({ ok: true, rows: aa.length });
    });
  }

  test('a second signal during a slow shutdown exits at once with 130', async () => {
    const dir = tempDir('second-signal');
    const agent = await launch({ dir, sources: [{ id: 'slow', type: 'mllp', listen: '127.0.0.1:0' }], config: { shutdown_timeout_secs: 60 } });
    // A sender that keeps its side of the connection open after the agent's FIN (half-open) holds
    // the graceful stop until shutdown_timeout_secs: long enough to send the second signal.
    const socket = connect({ host: '127.0.0.1', port: agent.mllpPorts.slow!, allowHalfOpen: true });
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', () => r()));
    let received = Buffer.alloc(0);
    const ack = new Promise<Buffer>((r) =>
      socket.on('data', (d: Buffer) => {
        received = Buffer.concat([received, d]);
        if (received.length >= 3 && received[received.length - 2] === 0x1c && received[received.length - 1] === 0x0d) r(received);
      }),
    );
    const gotFin = new Promise<void>((r) => socket.once('end', () => r()));
    socket.write(frame(realisticMessage('SLOW', 0)));
    const ackFrame = await ack;
    expect(ackFrame[0]).toBe(0x0b);
    expect(readAck(ackFrame.subarray(1, -2))).toEqual({ code: 'AA', controlId: controlIdOf('SLOW', 0) });

    process.kill(agent.child.pid!, 'SIGTERM');
    await waitForLine(agent, (e) => e.msg === 'agent stopping: no new connections; answering frames already received');
    await gotFin; // the agent has answered everything and closed its side
    await sleep(500);
    expect(agent.child.exitCode).toBeNull(); // still waiting for the half-open connection
    const t0 = Date.now();
    process.kill(agent.child.pid!, 'SIGINT');
    const exit = await agent.exited;
    expect(exit).toEqual({ code: 130, signal: null });
    expect(Date.now() - t0).toBeLessThan(3000);
    const entries = logEntries(agent);
    expect(entries.some((e) => e.msg === 'second signal: exiting without waiting' && e.signal === 'SIGINT')).toBe(true);
    expect(entries.some((e) => e.msg === 'agent stopped cleanly')).toBe(false);
    socket.destroy();
    // The AA'd message survived the hard exit.
    expect((await readBufferRows(join(dir, 'data', 'buffer.db'))).map((r) => r.controlId)).toEqual([controlIdOf('SLOW', 0)]);
  });

  test('no message content in the logs at log_level trace, refused frames included', async () => {
    const dir = tempDir('canary');
    const agent = await launch({
      dir,
      sources: [{ id: 'canary', type: 'mllp', listen: '127.0.0.1:0', max_message_bytes: '4KiB' }],
      config: { log_level: 'trace' },
    });
    const port = agent.mllpPorts.canary!;
    const opts = { patientName: CANARY_NAME };
    const goodOnes = [0, 1, 2].map((i) => realisticMessage('CAN', i, opts));
    const canaryApp = Buffer.from(realisticMessage('CAN', 6, opts).toString('latin1').replace('|EPIC|CITYHOSP|', '|CANARYZX|QUOKKA|'), 'latin1');
    const junk = Buffer.from(`this is not HL7 at all: ${CANARY_NAME} lives at 12 QUOKKA ROAD\r`, 'latin1');
    const stray = Buffer.concat([Buffer.from(`PID|1||X||${CANARY_NAME}\r`, 'latin1'), realisticMessage('CAN', 4, opts)]);
    const responses = await sendAll(port, [
      ...goodOnes,
      canaryApp,
      goodOnes[0]!, // a resend inside the dedupe window: logged as a duplicate
      withoutControlId(CANARY_NAME),
      oversized('CANBIG', 20_000, CANARY_NAME),
      junk,
      stray,
    ]);
    expect(responses.map((r) => [r.code, r.errorCode ?? ''])).toEqual([
      ['AA', ''],
      ['AA', ''],
      ['AA', ''],
      ['AA', ''],
      ['AA', ''],
      ['AE', '101'],
      ['AR', '104'],
      ['AR', '101'],
      ['AR', '100'],
    ]);
    expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    const entries = logEntries(agent);
    const refusedLines = entries.filter((e) => e.msg === 'frame refused');
    expect(refusedLines.map((e) => e.code)).toEqual([101, 104, 101, 100]);
    for (const e of refusedLines) expect(e.sha256_prefix).toMatch(/^[0-9a-f]{12}$/);
    expect(entries.filter((e) => e.msg === 'frame committed')).toHaveLength(5); // debug lines are on
    expect(entries.some((e) => e.msg === 'resent message recognised inside dedupe window; acknowledged again, stored once')).toBe(true);
    expect(agent.lines.length).toBeGreaterThan(10);
    const leaks = agent.lines.filter((l) => /CANARYZX|QUOKKA/i.test(l));
    expect(leaks).toEqual([]);
    // Nor the hex or base64 of the canary (a logged Buffer would show up that way).
    const hex = Buffer.from('CANARYZX').toString('hex');
    expect(agent.lines.filter((l) => l.toLowerCase().includes(hex))).toEqual([]);
    expect(agent.lines.filter((l) => l.includes(Buffer.from('CANARYZX^QUOKKA').toString('base64').slice(0, 12)))).toEqual([]);
    // The stored bytes are what was sent (so the canary is in the buffer, just not in the logs).
    const rows = await readBufferRows(join(dir, 'data', 'buffer.db'));
    expect(rows.map((r) => r.sha256)).toEqual([...goodOnes, canaryApp].map((m) => createHash('sha256').update(m).digest('hex')));
  });
});
