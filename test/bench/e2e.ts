// End to end and drain: the built control plane (`ferry-control-plane serve`, SQLite store) and an
// agent enrolled with it the documented way (`ferry-agent enroll`, token on stdin), both in their own
// processes, driven by the same lean MLLP load generator and messages as the agent-only runs.
//
//   end to end  MLLP in -> committed at the control plane, uplink enabled. Throughput is ACKed msgs/s
//               over the measured window; afterwards the bench waits until the agent's /status
//               uplink pending count is 0 and checks that the control plane's store (read-only,
//               with sqlite3) holds exactly the ACKed messages, each control id once.
//   drain       a backlog loaded over MLLP (8x64) with `uplink.enabled: false`, then the agent is
//               restarted on the same data dir with the uplink enabled and timed until pending is 0;
//               beside it, the same number of envelopes through a minimal grpc-js stream into a sink
//               that acknowledges at once (grpc-sink.ts): the ceiling for this contract on this machine.
//
// The control plane runs at log_level debug: its one line per committed batch (messages, commit_ms)
// is how the bench sees batch sizes and commit times there (one line per up to 512 messages).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { AGENT_MAIN, REPO_ROOT, startAgent, writeAgentConfig, type RunningAgent } from '../helpers/agent-process.js';
import { runSinkClient, type SinkClientResult } from './grpc-sink.js';
import { realisticSource, runLoad, type LoadResult } from './mllp-load.js';
import { cpuSeconds, memoryMap, rssBytes, sampleRss, systemBusySeconds, threadCpuDelta, threadCpuSeconds } from './procfs.js';
import { fetchMetrics, stopChild, track } from './servers.js';
import { onChildLines, parseJsonLine } from '../helpers/child-lines.js';

const CONTROL_PLANE_MAIN = join(REPO_ROOT, 'dist', 'control-plane', 'main.js');
const BENCH_SOURCE = 'bench';

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads a child's stdout and stderr line by line into `lines`, calling onLine with each parsed JSON line. */
function collectLines(child: ChildProcess, lines: string[], onLine?: (entry: Record<string, unknown>) => void): void {
  onChildLines(child, (line) => {
    lines.push(line);
    const entry = parseJsonLine(line);
    if (entry && onLine) onLine(entry);
  });
}

// ---- control plane -----------------------------------------------------------------------------

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly dataDir: string;
  readonly adminToken: string;
  readonly lines: string[];
  /** One entry per batch the ingest committed and acknowledged (from its debug log line). */
  readonly batches: { messages: number; commitMs: number; at: number }[];
  stop(): Promise<void>;
}

export async function startControlPlane(baseDir: string, timeoutMs = 20_000): Promise<ControlPlaneProcess> {
  const dir = mkdtempSync(join(baseDir, 'cp-'));
  const dataDir = join(dir, 'data');
  const config = join(dir, 'control-plane.yaml');
  writeFileSync(config, ['log_level: debug', 'http:', '  listen: 127.0.0.1:0', 'grpc:', '  listen: 127.0.0.1:0', 'mqtt:', '  listen: 127.0.0.1:0', ''].join('\n'));
  const child = spawn(process.execPath, [CONTROL_PLANE_MAIN, 'serve', '--config', config, '--data-dir', dataDir, '--http-port', '0', '--grpc-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  const lines: string[] = [];
  const batches: ControlPlaneProcess['batches'] = [];
  const ports = await new Promise<{ http: number; grpc: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane did not start within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
    collectLines(child, lines, (e) => {
      if (e.msg === 'batch committed and acknowledged') {
        batches.push({ messages: Number(e.messages), commitMs: Number(e.commit_ms), at: performance.now() });
      } else if (e.msg === 'control plane started') {
        clearTimeout(timer);
        resolve({ http: (e.http as { port: number }).port, grpc: (e.grpc as { port: number }).port });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited (code ${code}, signal ${signal}) before it started:\n${lines.join('\n')}`));
    });
  });
  const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  return {
    child,
    pid: child.pid!,
    httpPort: ports.http,
    grpcPort: ports.grpc,
    dataDir,
    adminToken,
    lines,
    batches,
    stop: () => stopChild(child, 20_000),
  };
}

async function controlPlaneMetric(cp: ControlPlaneProcess, name: string): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(await res.text());
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** What the control plane's store holds for one agent: rows and distinct control ids (read-only). */
export async function controlPlaneHolds(cp: ControlPlaneProcess, agentId: string): Promise<{ rows: number; distinctControlIds: number; distinctSeqs: number }> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d = new sqlite3.Database(join(cp.dataDir, 'store.db'), sqlite3.OPEN_READONLY, (err) => (err ? reject(err) : resolve(d)));
  });
  try {
    return await new Promise((resolve, reject) =>
      db.get(
        'SELECT COUNT(*) AS n, COUNT(DISTINCT control_id) AS ids, COUNT(DISTINCT seq) AS seqs FROM messages WHERE agent_id = ?',
        [agentId],
        (err, row: { n: number; ids: number; seqs: number } | undefined) => (err ? reject(err) : resolve({ rows: row?.n ?? 0, distinctControlIds: row?.ids ?? 0, distinctSeqs: row?.seqs ?? 0 })),
      ),
    );
  } finally {
    await new Promise<void>((resolve) => db.close(() => resolve()));
  }
}

// ---- enrolled agent ----------------------------------------------------------------------------

interface AgentSetup {
  readonly dir: string;
  readonly agentId: string;
}

function agentOptions(dir: string, uplinkEnabled: boolean): Parameters<typeof startAgent>[0] {
  return {
    dir,
    sources: [{ id: BENCH_SOURCE, type: 'mllp', listen: '127.0.0.1:0' }],
    config: { log_level: 'info', uplink: { enabled: uplinkEnabled } },
  };
}

/** A fresh agent data dir enrolled with `cp` the documented way: an admin-made token on stdin. */
export async function enrollAgent(cp: ControlPlaneProcess, baseDir: string): Promise<AgentSetup> {
  const dir = mkdtempSync(join(baseDir, 'e2e-agent-'));
  const configPath = writeAgentConfig(agentOptions(dir, true));
  const res = await fetch(`http://127.0.0.1:${cp.httpPort}/api/v1/enrollment-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ expires_in_secs: 600 }),
  });
  if (!res.ok) throw new Error(`creating an enrollment token failed: HTTP ${res.status} ${await res.text()}`);
  const { token } = (await res.json()) as { token: string };
  const child = spawn(process.execPath, [AGENT_MAIN, 'enroll', '--control-plane', `http://127.0.0.1:${cp.httpPort}`, '--token-file', '-', '--config', configPath], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  const lines: string[] = [];
  collectLines(child, lines);
  child.stdin!.end(`${token}\n`);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`ferry-agent enroll exited with ${code}:\n${lines.join('\n')}`);
  const credentials = JSON.parse(readFileSync(join(dir, 'data', 'credentials.json'), 'utf8')) as { agent_id: string };
  return { dir, agentId: credentials.agent_id };
}

async function runEnrolledAgent(setup: AgentSetup, uplinkEnabled: boolean): Promise<RunningAgent> {
  const agent = await startAgent(agentOptions(setup.dir, uplinkEnabled));
  track(agent.child);
  if (!agent.mllpPorts[BENCH_SOURCE]) {
    await agent.stop('SIGKILL');
    throw new Error(`agent started without the bench source:\n${agent.lines.join('\n')}`);
  }
  return agent;
}

interface UplinkView {
  readonly state: string;
  readonly pending: { readonly count: number; readonly bytes: number };
  readonly committed_seq: number | null;
}

async function uplinkStatus(agent: RunningAgent): Promise<UplinkView> {
  const res = await fetch(`http://127.0.0.1:${agent.adminPort}/status`, { signal: AbortSignal.timeout(5000) });
  return ((await res.json()) as { uplink: UplinkView }).uplink;
}

/** Polls /status until the uplink's pending count is 0; resolves with the time it happened (performance.now()) or undefined on timeout. */
async function untilDrained(agent: RunningAgent, timeoutMs: number, intervalMs: number, onPoll?: (u: UplinkView, at: number) => void): Promise<number | undefined> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const u = await uplinkStatus(agent).catch(() => undefined);
    const at = performance.now();
    if (u) {
      onPoll?.(u, at);
      if (u.pending.count === 0) return at;
    }
    await delay(intervalMs);
  }
  return undefined;
}

async function untilConnected(agent: RunningAgent, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const u = await uplinkStatus(agent).catch(() => undefined);
    if (u?.state === 'connected') return;
    if (performance.now() > end) throw new Error(`the agent's uplink did not connect within ${timeoutMs} ms (state ${u?.state ?? 'unknown'}):\n${agent.lines.slice(-10).join('\n')}`);
    await delay(50);
  }
}

/** V8 heap used/total and external (Buffers) memory from the agent's /metrics, in MiB: where an RSS rise lives. */
async function heapBreakdown(adminPort: number): Promise<string | undefined> {
  const text = await fetchMetrics(adminPort).catch(() => undefined);
  if (!text) return undefined;
  const mib = (name: string): string => {
    const m = new RegExp(`^ferry_agent_${name} (\\S+)$`, 'm').exec(text);
    return m ? (Number(m[1]) / 1024 / 1024).toFixed(1) : '?';
  };
  return `V8 heap used ${mib('nodejs_heap_size_used_bytes')} MiB of ${mib('nodejs_heap_size_total_bytes')} MiB, external ${mib('nodejs_external_memory_bytes')} MiB`;
}

/** RssAnon and RssFile + RssShmem of a process (bytes): heap and buffers vs mapped files. */
export function rssSplit(pid: number): { anon: number; file: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
  } catch {
    return undefined;
  }
}

function metricValue(text: string | undefined, name: string): number {
  if (!text) return NaN;
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// ---- results -----------------------------------------------------------------------------------

export interface BatchStats {
  readonly count: number;
  readonly meanMessages: number;
  readonly meanCommitMs: number;
  readonly p99CommitMs: number;
  /** Sum of commit times over the wall time considered: how much of the time the stream waited on the store. */
  readonly commitShare: number;
}

function batchStats(batches: ControlPlaneProcess['batches'], from: number, to: number): BatchStats {
  const inRange = batches.filter((b) => b.at >= from && b.at <= to);
  const n = inRange.length;
  const ms = inRange.map((b) => b.commitMs).sort((a, b) => a - b);
  const sumMs = ms.reduce((a, b) => a + b, 0);
  return {
    count: n,
    meanMessages: n > 0 ? inRange.reduce((a, b) => a + b.messages, 0) / n : NaN,
    meanCommitMs: n > 0 ? sumMs / n : NaN,
    p99CommitMs: n > 0 ? ms[Math.min(n - 1, Math.ceil(0.99 * n) - 1)]! : NaN,
    commitShare: to > from ? sumMs / (to - from) : NaN,
  };
}

export interface Verification {
  readonly ok: boolean;
  readonly detail: string;
}

function verify(acked: number, sent: number, unanswered: number, holds: { rows: number; distinctControlIds: number; distinctSeqs: number }, drained: boolean): Verification {
  const parts = [`ACKed ${acked.toLocaleString('en-US')}, stored ${holds.rows.toLocaleString('en-US')} (distinct control ids ${holds.distinctControlIds.toLocaleString('en-US')})`];
  if (!drained) parts.push('agent pending never reached 0');
  let ok = drained && holds.distinctControlIds === holds.rows && holds.distinctSeqs === holds.rows;
  if (unanswered === 0) ok &&= holds.rows === acked;
  else {
    // Sent but never answered (connection closed by the bench): may or may not have been committed.
    ok &&= holds.rows >= acked && holds.rows <= sent;
    parts.push(`${unanswered} unanswered, so ${acked}-${sent} allowed`);
  }
  return { ok, detail: parts.join('; ') };
}

export interface E2eResult {
  readonly name: string;
  readonly load: LoadResult;
  readonly agentCpuSeconds: number;
  readonly cpCpuSeconds: number;
  readonly othersCpuSeconds: number;
  /** Agent CPU split: main thread / other threads, seconds in the window. */
  readonly agentThreads: [string, number][];
  readonly agentPeakRss: number;
  readonly cpPeakRss: number;
  /** Messages the control plane stored within the measured window (its ingest counter). */
  readonly cpStoredInWindow: number;
  /** Agent uplink pending count when the window closed. */
  readonly pendingAtWindowEnd: number;
  /** Seconds from the end of the load until pending reached 0. */
  readonly catchUpSeconds: number;
  readonly batches: BatchStats;
  /** Messages per batch as the agent sent them (uplink counters over the window). */
  readonly agentBatchMean: number;
  readonly verification: Verification;
  rounds?: number[];
}

export interface E2eOptions {
  readonly baseDir: string;
  readonly c: number;
  readonly w: number;
  readonly name: string;
  readonly prefix: string;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly graceMs: number;
}

export async function runE2e(o: E2eOptions): Promise<E2eResult> {
  const cp = await startControlPlane(o.baseDir);
  let agent: RunningAgent | undefined;
  try {
    const setup = await enrollAgent(cp, o.baseDir);
    agent = await runEnrolledAgent(setup, true);
    await untilConnected(agent, 15_000);
    const a = agent;
    const pid = a.child.pid!;
    const rssA = sampleRss(pid, 100);
    const rssC = sampleRss(cp.pid, 100);
    let agentCpu0 = 0;
    let agentCpu1 = 0;
    let cpCpu0 = 0;
    let cpCpu1 = 0;
    let busy0 = 0;
    let busy1 = 0;
    let threads0 = new Map<string, number>();
    let threads1 = new Map<string, number>();
    let stored0: Promise<number | undefined> = Promise.resolve(undefined);
    let stored1: Promise<number | undefined> = Promise.resolve(undefined);
    let agentMetrics0: Promise<string | undefined> = Promise.resolve(undefined);
    let agentMetrics1: Promise<string | undefined> = Promise.resolve(undefined);
    let pendingEnd: Promise<number> = Promise.resolve(NaN);
    let windowStart = 0;
    let windowEnd = 0;
    let load: LoadResult;
    try {
      load = await runLoad({
        host: '127.0.0.1',
        port: a.mllpPorts[BENCH_SOURCE]!,
        connections: o.c,
        window: o.w,
        warmupMs: o.warmupMs,
        measureMs: o.measureMs,
        graceMs: o.graceMs,
        source: realisticSource(o.prefix),
        onWindowStart: () => {
          windowStart = performance.now();
          agentCpu0 = cpuSeconds(pid) ?? 0;
          cpCpu0 = cpuSeconds(cp.pid) ?? 0;
          busy0 = systemBusySeconds() ?? 0;
          threads0 = threadCpuSeconds(pid);
          stored0 = controlPlaneMetric(cp, 'ferry_cp_ingest_messages_stored_total');
          agentMetrics0 = fetchMetrics(a.adminPort).catch(() => undefined);
        },
        onWindowEnd: () => {
          windowEnd = performance.now();
          agentCpu1 = cpuSeconds(pid) ?? agentCpu0;
          cpCpu1 = cpuSeconds(cp.pid) ?? cpCpu0;
          busy1 = systemBusySeconds() ?? busy0;
          threads1 = threadCpuSeconds(pid);
          stored1 = controlPlaneMetric(cp, 'ferry_cp_ingest_messages_stored_total');
          agentMetrics1 = fetchMetrics(a.adminPort).catch(() => undefined);
          pendingEnd = uplinkStatus(a).then(
            (u) => u.pending.count,
            () => NaN,
          );
        },
      });
    } finally {
      rssA.stop();
      rssC.stop();
    }
    const loadEnd = performance.now();
    const drainedAt = await untilDrained(a, 120_000, 50);
    const holds = await controlPlaneHolds(cp, setup.agentId);
    const [s0, s1, m0, m1, pending] = await Promise.all([stored0, stored1, agentMetrics0, agentMetrics1, pendingEnd]);
    const agentBatches = metricValue(m1, 'ferry_uplink_batches_sent_total') - metricValue(m0, 'ferry_uplink_batches_sent_total');
    const agentAcked = metricValue(m1, 'ferry_uplink_messages_acked_total') - metricValue(m0, 'ferry_uplink_messages_acked_total');
    const verification = verify(load.notAccepted === 0 && load.mismatched === 0 ? load.responses : NaN, load.sent, load.unanswered, holds, drainedAt !== undefined);
    const result: E2eResult = {
      name: o.name,
      load,
      agentCpuSeconds: agentCpu1 - agentCpu0,
      cpCpuSeconds: cpCpu1 - cpCpu0,
      othersCpuSeconds: Math.max(0, busy1 - busy0 - (agentCpu1 - agentCpu0) - (cpCpu1 - cpCpu0) - load.clientCpuSeconds),
      agentThreads: threadCpuDelta(threads0, threads1),
      agentPeakRss: rssA.peak(),
      cpPeakRss: rssC.peak(),
      cpStoredInWindow: s0 !== undefined && s1 !== undefined ? s1 - s0 : NaN,
      pendingAtWindowEnd: pending,
      catchUpSeconds: drainedAt !== undefined ? (drainedAt - loadEnd) / 1000 : NaN,
      batches: batchStats(cp.batches, windowStart, windowEnd),
      agentBatchMean: agentBatches > 0 ? agentAcked / agentBatches : NaN,
      verification,
    };
    return result;
  } finally {
    if (agent) await stopChild(agent.child, 20_000);
    await cp.stop();
  }
}

// ---- drain -------------------------------------------------------------------------------------

export interface DrainResult {
  readonly backlog: number;
  /** The MLLP load that built the backlog (8x64, uplink disabled). */
  readonly fill: LoadResult;
  /** Seconds from the restarted agent's "agent started" line to pending 0. */
  readonly drainSeconds: number;
  /** Seconds from spawning the restarted agent to pending 0 (start-up included). */
  readonly drainWithStartSeconds: number;
  readonly msgsPerSec: number;
  readonly msgsPerSecWithStart: number;
  readonly agentRssStart: number;
  readonly agentRssPeak: number;
  readonly agentRssEnd: number;
  /** RssAnon / RssFile+RssShmem at start and at the end of the drain. */
  readonly agentRssSplitStart: { anon: number; file: number } | undefined;
  readonly agentRssSplitEnd: { anon: number; file: number } | undefined;
  /** memoryMap() of the agent at the start and end of the drain, and its V8 heap at the end. */
  readonly agentMemoryMapStart: string | undefined;
  readonly agentMemoryMapEnd: string | undefined;
  readonly agentHeapEnd: string | undefined;
  /** CPU of the bench process meanwhile (polling /status every 25 ms). */
  readonly benchCpuSeconds: number;
  readonly agentCpuSeconds: number;
  readonly agentThreads: [string, number][];
  readonly cpCpuSeconds: number;
  readonly othersCpuSeconds: number;
  readonly batches: BatchStats;
  readonly verification: Verification;
  readonly ceiling: (SinkClientResult & { sinkCpuSeconds: number }) | undefined;
  readonly ceilingError?: string;
}

export interface DrainOptions {
  readonly baseDir: string;
  readonly messages: number;
  readonly prefix: string;
  readonly graceMs: number;
  readonly ceiling: boolean;
}

export async function runDrain(o: DrainOptions): Promise<DrainResult> {
  const cp = await startControlPlane(o.baseDir);
  let agent: RunningAgent | undefined;
  try {
    const setup = await enrollAgent(cp, o.baseDir);
    agent = await runEnrolledAgent(setup, false);
    log(`drain: loading a backlog of ${o.messages.toLocaleString('en-US')} messages over MLLP 8×64 with the uplink disabled`);
    const fill = await runLoad({
      host: '127.0.0.1',
      port: agent.mllpPorts[BENCH_SOURCE]!,
      connections: 8,
      window: 64,
      warmupMs: 0,
      measureMs: Math.max(60_000, o.messages / 500) * 1.5,
      graceMs: o.graceMs,
      source: realisticSource(o.prefix),
      maxMessages: o.messages,
    });
    const fillOk = fill.notAccepted === 0 && fill.mismatched === 0 && fill.unanswered === 0;
    if (!fillOk) throw new Error(`loading the backlog went wrong: ${fill.responses} responses of ${fill.sent} sent, ${fill.notAccepted} not AA, ${fill.mismatched} mismatched, ${fill.unanswered} unanswered; first problem: ${fill.firstProblem}`);
    const before = await uplinkStatus(agent);
    log(`drain: backlog ${before.pending.count.toLocaleString('en-US')} messages (${(before.pending.bytes / 1024 / 1024).toFixed(0)} MiB) at ${Math.round(fill.msgsPerSec).toLocaleString('en-US')} msgs/s; restarting the agent with the uplink enabled`);
    await stopChild(agent.child, 20_000);
    agent = undefined;

    const spawnedAt = performance.now();
    agent = await runEnrolledAgent(setup, true);
    const startedAt = performance.now();
    const a = agent;
    const pid = a.child.pid!;
    const rssStart = rssBytes(pid) ?? 0;
    const splitStart = rssSplit(pid);
    const mapStart = memoryMap(pid);
    if (mapStart) log(`drain: agent memory at the start: ${mapStart}`);
    const benchCpu0 = process.cpuUsage();
    const rss = sampleRss(pid, 100);
    const agentCpu0 = cpuSeconds(pid) ?? 0;
    const cpCpu0 = cpuSeconds(cp.pid) ?? 0;
    const busy0 = systemBusySeconds() ?? 0;
    const threads0 = threadCpuSeconds(pid);
    let drainedAt: number | undefined;
    try {
      drainedAt = await untilDrained(a, 300_000, 25);
    } finally {
      rss.stop();
    }
    const agentCpu = (cpuSeconds(pid) ?? agentCpu0) - agentCpu0;
    const cpCpu = (cpuSeconds(cp.pid) ?? cpCpu0) - cpCpu0;
    const busy = (systemBusySeconds() ?? busy0) - busy0;
    const threads = threadCpuDelta(threads0, threadCpuSeconds(pid));
    const rssEnd = rssBytes(pid) ?? 0;
    const splitEnd = rssSplit(pid);
    const heapEnd = await heapBreakdown(a.adminPort);
    if (heapEnd) log(`drain: agent memory at the end: ${heapEnd}`);
    const mapEnd = memoryMap(pid);
    if (mapEnd) log(`drain: agent memory at the end: ${mapEnd}`);
    const benchCpuUsage = process.cpuUsage(benchCpu0);
    const benchCpu = (benchCpuUsage.user + benchCpuUsage.system) / 1e6;
    const end = drainedAt ?? performance.now();
    const holds = await controlPlaneHolds(cp, setup.agentId);
    const verification = verify(fill.responses, fill.sent, 0, holds, drainedAt !== undefined);
    const drainSeconds = (end - startedAt) / 1000;
    const drainWithStartSeconds = (end - spawnedAt) / 1000;
    log(`drain: ${fill.responses.toLocaleString('en-US')} messages in ${drainSeconds.toFixed(2)} s = ${Math.round(fill.responses / drainSeconds).toLocaleString('en-US')} msgs/s; ${verification.ok ? 'all stored once' : `VERIFICATION FAILED: ${verification.detail}`}`);
    await stopChild(a.child, 20_000);
    agent = undefined;
    await cp.stop();

    let ceiling: DrainResult['ceiling'];
    let ceilingError: string | undefined;
    if (o.ceiling) {
      try {
        ceiling = await runCeiling(fill.responses, `${o.prefix}S`);
        log(`drain ceiling (grpc sink): ${Math.round(ceiling.msgsPerSec).toLocaleString('en-US')} msgs/s, ${ceiling.batches} batches`);
      } catch (err) {
        ceilingError = (err as Error).message;
        log(`drain ceiling failed: ${ceilingError}`);
      }
    }
    return {
      backlog: fill.responses,
      fill,
      drainSeconds,
      drainWithStartSeconds,
      msgsPerSec: fill.responses / drainSeconds,
      msgsPerSecWithStart: fill.responses / drainWithStartSeconds,
      agentRssStart: rssStart,
      agentRssPeak: rss.peak(),
      agentRssEnd: rssEnd,
      agentRssSplitStart: splitStart,
      agentRssSplitEnd: splitEnd,
      agentMemoryMapStart: mapStart,
      agentMemoryMapEnd: mapEnd,
      agentHeapEnd: heapEnd,
      benchCpuSeconds: benchCpu,
      agentCpuSeconds: agentCpu,
      agentThreads: threads,
      cpCpuSeconds: cpCpu,
      othersCpuSeconds: Math.max(0, busy - agentCpu - cpCpu - benchCpu),
      batches: batchStats(cp.batches, startedAt, end),
      verification,
      ceiling,
      ...(ceilingError ? { ceilingError } : {}),
    };
  } finally {
    if (agent) await stopChild(agent.child, 20_000);
    await cp.stop();
  }
}

/** The grpc sink in its own process, driven from this one with `messages` envelopes. */
async function runCeiling(messages: number, prefix: string): Promise<SinkClientResult & { sinkCpuSeconds: number }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'grpc-sink.js')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORT: '0' } });
  track(child);
  const lines: string[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`grpc sink did not start:\n${lines.join('\n')}`)), 15_000);
      collectLines(child, lines, (e) => {
        if (typeof e.port === 'number') {
          clearTimeout(timer);
          resolve(e.port);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`grpc sink exited (${code}):\n${lines.join('\n')}`));
      });
    });
    const cpu0 = cpuSeconds(child.pid!) ?? 0;
    const result = await runSinkClient(port, messages, prefix);
    return { ...result, sinkCpuSeconds: (cpuSeconds(child.pid!) ?? cpu0) - cpu0 };
  } finally {
    await stopChild(child, 5000);
  }
}
