// `npm run bench`: MLLP ingest benchmark. For each scenario (C connections x W frames in flight per
// connection) it measures three servers, each in its own process, in the same run and back to back:
//   ceiling          a minimal non-durable MLLP ACK server (ceiling-server.ts)
//   node-hl7-server  the npm package 2.4.0 answering AA to everything (no durability)
//   Ferry            the built agent: encrypted, WAL, synchronous=FULL, group commit, ACK after commit
// plus the disk's fsync rate and the agent's RSS, then prints a markdown report (also written to
// test/bench/results/latest.md) with PASS/FAIL beside the targets.
//
// The machine is shared and noisy, so the whole set runs BENCH_ROUNDS times (the second round in
// reverse server order) and each server's best valid round is reported, every round's figure beside it.
//
// Environment: BENCH_SECONDS (measured seconds per run, default 3), BENCH_ROUNDS (2), BENCH_WARMUP_SECONDS (1),
// BENCH_GRACE_SECONDS (3), BENCH_FSYNC_SECONDS (2), BENCH_SCENARIOS ("1x1,8x1,32x1,8x64"),
// BENCH_CLIENT_CHECK (1: also drive the ceiling with pre-built messages), BENCH_CPU_PROF (a folder:
// run the agent with --cpu-prof there), BENCH_DIR (where temp data goes), BENCH_KEEP (1: keep it),
// BENCH_STRICT (1: exit 1 when a target fails; a wrong Ferry ACK always exits 1).
//
// End to end and drain (e2e.ts), in the same run: BENCH_E2E (0: skip the end-to-end runs),
// BENCH_E2E_SCENARIOS ("32x1,8x64"; run every round, best round reported), BENCH_E2E_CONTENDED (0:
// skip the agent-only runs beside a CPU load like the control plane's), BENCH_DRAIN_MESSAGES
// (200000; 0 skips the drain), BENCH_DRAIN_CEILING (0: skip the grpc sink ceiling). A message that
// was ACKed but not stored exactly once at the control plane always exits 1.
//
// File drops and import (files.ts), in the same run: BENCH_FILES (0: skip), BENCH_IMPORT_FILES
// (10000), BENCH_IMPORT_PER_FILE (10), BENCH_DROP_FILES (10000). A file not taken always exits 1.
//
// Fleet scale (fleet.ts): BENCH_FLEET (0: skip), BENCH_FLEET_FULL (1: the full 1,000–10,000 step-up,
// ~4 min; default: 1,000 and 5,000 agents, ~1 min), BENCH_FLEET_STEPS, BENCH_FLEET_SECONDS,
// BENCH_FLEET_SIMS, BENCH_FLEET_SAMPLE, BENCH_FLEET_CONNECT_RATE, BENCH_FLEET_CPU_PROF; also written
// to test/bench/results/fleet.md; `node dist/test/bench/fleet-run.js` runs it alone.

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realisticMessage } from '../helpers/messages.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { prebuiltSource, realisticSource, runLoad, type LoadResult, type MessageSource } from './mllp-load.js';
import { cpuSeconds, loadAverage, machineInfo, probeFsync, rssBytes, sampleRss, schedDelta, systemBusySeconds, threadCpuDelta, threadCpuSeconds, threadSched, type FsyncProbe, type SchedSplit } from './procfs.js';
import { runDrain, runE2e, type DrainResult, type E2eResult } from './e2e.js';
import { runFleetBench, type FleetResult } from './fleet.js';
import { runFilesBench, type FilesBenchResult } from './files.js';
import { SERVER_LABEL, fetchMetrics, histogramBuckets, histogramTotals, killAllChildren, startCpuLoad, startFerry, startPeer, tempBase, type BenchServer, type FerryServer, type ServerKind } from './servers.js';

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return n;
}

const MEASURE_S = envNumber('BENCH_SECONDS', 3);
const ROUNDS = Math.max(1, Math.round(envNumber('BENCH_ROUNDS', 2)));
const WARMUP_S = envNumber('BENCH_WARMUP_SECONDS', 1);
const GRACE_S = envNumber('BENCH_GRACE_SECONDS', 3);
const FSYNC_S = envNumber('BENCH_FSYNC_SECONDS', 2);
const CLIENT_CHECK = process.env.BENCH_CLIENT_CHECK !== '0';
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF;
const KEEP = process.env.BENCH_KEEP === '1';
const STRICT = process.env.BENCH_STRICT === '1';

interface Scenario {
  readonly c: number;
  readonly w: number;
  readonly name: string;
}

function parseScenarios(spec: string): Scenario[] {
  return spec.split(',').map((s) => {
    const m = /^\s*(\d+)\s*[x×]\s*(\d+)\s*$/.exec(s);
    if (!m) throw new Error(`BENCH_SCENARIOS: "${s}" is not CxW (e.g. 8x64)`);
    const c = Number(m[1]);
    const w = Number(m[2]);
    return { c, w, name: `${c}×${w}` };
  });
}

const SCENARIOS = parseScenarios(process.env.BENCH_SCENARIOS ?? '1x1,8x1,32x1,8x64');
const E2E_SCENARIOS = process.env.BENCH_E2E === '0' ? [] : parseScenarios(process.env.BENCH_E2E_SCENARIOS ?? '32x1,8x64');
const DRAIN_MESSAGES = Math.round(envNumber('BENCH_DRAIN_MESSAGES', 200_000));
const DRAIN_CEILING = process.env.BENCH_DRAIN_CEILING !== '0';

type RunKind = ServerKind | 'ceiling-prebuilt';

interface RunResult {
  readonly kind: RunKind;
  readonly load: LoadResult;
  readonly serverCpuSeconds: number;
  /** CPU used in the window by everything else on the machine (other users, the kernel's own work). */
  readonly othersCpuSeconds: number;
  /** msgs/s of every round of this server and scenario (NaN where the ACKs were wrong). */
  readonly rounds?: number[];
  /** Server threads' run time and run-queue wait in the window. */
  readonly sched: SchedSplit;
  /** Server CPU seconds in the window per thread, busiest first. */
  readonly threads: [string, number][];
  readonly peakRss: number;
  readonly idleRss?: number;
  readonly ferry?: FerryDiagnostics;
  readonly peerStderr?: string;
}

interface FerryDiagnostics {
  readonly commits: number;
  readonly messagesCommitted: number;
  readonly commitSecondsSum: number;
  /** Commits per messages-per-commit bucket (non-cumulative), in the window. */
  readonly sizeBuckets: [string, number][];
  readonly logLinesUnderLoad: number;
  readonly logSample: string[];
}

const runTag = Date.now().toString(36).slice(-4);
let serial = 0;
/** A control-id prefix unique to this run, server and scenario, so no id is ever sent twice. */
function prefix(kind: RunKind | 'e2e' | 'drain'): string {
  const letter = { ceiling: 'C', 'ceiling-prebuilt': 'P', hl7: 'H', ferry: 'F', e2e: 'E', drain: 'D' }[kind];
  return `B${runTag}${letter}${(serial++).toString(36)}`;
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

async function measure(kind: RunKind, server: BenchServer, sc: Scenario, source: MessageSource): Promise<RunResult> {
  let cpuStart = 0;
  let cpuEnd = 0;
  let busyStart = 0;
  let busyEnd = 0;
  let schedStart = new Map<string, [number, number]>();
  let schedEnd = new Map<string, [number, number]>();
  let threadsStart = new Map<string, number>();
  let threadsEnd = new Map<string, number>();
  let metricsStart: Promise<string | undefined> = Promise.resolve(undefined);
  let metricsEnd: Promise<string | undefined> = Promise.resolve(undefined);
  let linesAtStart = 0;
  let linesAtEnd = 0;
  const ferry = kind === 'ferry' ? (server as FerryServer) : undefined;
  const rss = sampleRss(server.pid, 100);
  let load: LoadResult;
  try {
    load = await runLoad({
      host: '127.0.0.1',
      port: server.port,
      connections: sc.c,
      window: sc.w,
      warmupMs: WARMUP_S * 1000,
      measureMs: MEASURE_S * 1000,
      graceMs: GRACE_S * 1000,
      source,
      onWindowStart: () => {
        cpuStart = cpuSeconds(server.pid) ?? 0;
        busyStart = systemBusySeconds() ?? 0;
        threadsStart = threadCpuSeconds(server.pid);
        schedStart = threadSched(server.pid);
        linesAtStart = server.lines.length;
        if (ferry) metricsStart = fetchMetrics(ferry.adminPort).catch(() => undefined);
      },
      onWindowEnd: () => {
        cpuEnd = cpuSeconds(server.pid) ?? cpuStart;
        busyEnd = systemBusySeconds() ?? busyStart;
        threadsEnd = threadCpuSeconds(server.pid);
        schedEnd = threadSched(server.pid);
        linesAtEnd = server.lines.length;
        if (ferry) metricsEnd = fetchMetrics(ferry.adminPort).catch(() => undefined);
      },
    });
  } finally {
    rss.stop();
  }
  const peakRss = rss.peak();
  let diagnostics: FerryDiagnostics | undefined;
  if (ferry) {
    const [a, b] = await Promise.all([metricsStart, metricsEnd]);
    diagnostics = ferryDiagnostics(a, b, server.lines.slice(linesAtStart, linesAtEnd));
  }
  const othersCpuSeconds = Math.max(0, busyEnd - busyStart - (cpuEnd - cpuStart) - load.clientCpuSeconds);
  return { kind, load, serverCpuSeconds: cpuEnd - cpuStart, othersCpuSeconds, sched: schedDelta(schedStart, schedEnd), threads: threadCpuDelta(threadsStart, threadsEnd), peakRss, ...(diagnostics ? { ferry: diagnostics } : {}) };
}

function ferryDiagnostics(before: string | undefined, after: string | undefined, lines: string[]): FerryDiagnostics {
  const name = 'ferry_buffer_commit_messages';
  const empty = { sum: 0, count: 0 };
  const m0 = before ? histogramTotals(before, name) : empty;
  const m1 = after ? histogramTotals(after, name) : empty;
  const s0 = before ? histogramTotals(before, 'ferry_buffer_commit_seconds') : empty;
  const s1 = after ? histogramTotals(after, 'ferry_buffer_commit_seconds') : empty;
  const b0 = before ? histogramBuckets(before, name) : new Map<string, number>();
  const b1 = after ? histogramBuckets(after, name) : new Map<string, number>();
  const sizeBuckets: [string, number][] = [];
  let prevCum = 0;
  for (const [le, cum1] of b1) {
    const cum = cum1 - (b0.get(le) ?? 0);
    const inBucket = cum - prevCum;
    prevCum = cum;
    if (inBucket > 0) sizeBuckets.push([le, inBucket]);
  }
  return {
    commits: m1.count - m0.count,
    messagesCommitted: m1.sum - m0.sum,
    commitSecondsSum: s1.sum - s0.sum,
    sizeBuckets,
    logLinesUnderLoad: lines.length,
    logSample: lines.slice(0, 3),
  };
}

async function runScenario(sc: Scenario, base: string, round: number): Promise<Map<RunKind, RunResult>> {
  const results = new Map<RunKind, RunResult>();
  const plan: RunKind[] = ['ceiling', ...(CLIENT_CHECK ? (['ceiling-prebuilt'] as const) : []), 'hl7', 'ferry'];
  // Alternate the order between rounds so drift in the machine's load does not always hit the same server.
  if (round % 2 === 1) plan.reverse();
  for (const kind of plan) {
    let server: BenchServer | undefined;
    let idleRss: number | undefined;
    try {
      if (kind === 'ferry') {
        server = await startFerry(base, CPU_PROF_DIR ? { cpuProfileDir: CPU_PROF_DIR, profileName: `agent-${sc.c}x${sc.w}-round${round + 1}.cpuprofile` } : {});
        await new Promise((r) => setTimeout(r, 500));
        idleRss = rssBytes(server.pid);
      } else {
        server = await startPeer(kind === 'hl7' ? 'hl7' : 'ceiling');
      }
      const source = kind === 'ceiling-prebuilt' ? prebuiltSource(prefix(kind)) : realisticSource(prefix(kind));
      const result = await measure(kind, server, sc, source);
      await server.stop();
      const stopped = server;
      server = undefined;
      const peerStderr = kind === 'hl7' ? stopped.lines.find((l) => l.includes('parse_errors')) : undefined;
      results.set(kind, { ...result, ...(idleRss !== undefined ? { idleRss } : {}), ...(peerStderr ? { peerStderr } : {}) });
      const l = result.load;
      log(
        `round ${round + 1} ${sc.name.padEnd(4)} ${kind.padEnd(16)} ${fmtRate(l.msgsPerSec).padStart(8)} msgs/s  p50 ${fmt(l.p50Ms)} ms  p99 ${fmt(l.p99Ms)} ms  ` +
          `server CPU ${pct(result.serverCpuSeconds, l.windowSeconds)}  client CPU ${pct(l.clientCpuSeconds, l.windowSeconds)}  others ${pct(result.othersCpuSeconds, l.windowSeconds)}` +
          (ackProblems(l) ? `  ACK problems: ${ackProblems(l)}` : ''),
      );
    } finally {
      await server?.stop();
    }
  }
  return results;
}

/** Per server, the round with the highest valid throughput (or the last round if none was valid). */
function bestOfRounds(list: Map<RunKind, RunResult>[]): Map<RunKind, RunResult> {
  const out = new Map<RunKind, RunResult>();
  const kinds = new Set(list.flatMap((m) => [...m.keys()]));
  for (const kind of kinds) {
    const runs = list.map((m) => m.get(kind)).filter((r): r is RunResult => r !== undefined);
    const figures = runs.map((r) => (valid(r) ? r.load.msgsPerSec : NaN));
    let best = runs[runs.length - 1]!;
    for (const r of runs) if (valid(r) && (!valid(best) || r.load.msgsPerSec > best.load.msgsPerSec)) best = r;
    out.set(kind, { ...best, rounds: figures });
  }
  return out;
}

// ---- formatting ------------------------------------------------------------------------------

function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(digits);
}

function fmtRate(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

function pct(cpu: number, seconds: number): string {
  return seconds > 0 ? `${Math.round((cpu / seconds) * 100)}%` : 'n/a';
}

function threadSplit(threads: [string, number][], secs: number): string {
  const main = threads.find(([n]) => n === 'main')?.[1] ?? 0;
  const others = threads.filter(([n]) => n !== 'main').reduce((a, [, v]) => a + v, 0);
  return `${pct(main, secs)} / ${pct(others, secs)}`;
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function ackProblems(l: LoadResult): string {
  const parts: string[] = [];
  if (l.mismatched > 0) parts.push(`${l.mismatched} mismatched ACKs`);
  if (l.notAccepted > 0) parts.push(`${l.notAccepted} not AA`);
  if (l.unanswered > 0) parts.push(`${l.unanswered} unanswered`);
  if (l.unexpected > 0) parts.push(`${l.unexpected} unexpected`);
  if (l.crossCheckDisagreements > 0) parts.push(`${l.crossCheckDisagreements} readAck disagreements`);
  if (l.closedEarly > 0) parts.push(`${l.closedEarly} connections closed by server`);
  if (l.socketErrors.length > 0) parts.push(`socket errors: ${l.socketErrors.join(',')}`);
  return parts.join(', ');
}

/** A run's throughput counts only if every ACK was right; otherwise the figure is not comparable. */
function valid(r: RunResult | undefined): boolean {
  return r !== undefined && ackProblems(r.load) === '' && r.load.windowResponses > 0;
}

function rateCell(r: RunResult | undefined): string {
  if (!r) return 'n/a';
  if (valid(r)) return fmtRate(r.load.msgsPerSec);
  return `n/a (${fmtRate(r.load.msgsPerSec)} resp/s, ACKs wrong)`;
}

function ratio(a: RunResult | undefined, b: RunResult | undefined): number | undefined {
  if (!a || !b || !valid(a) || !valid(b) || b.load.msgsPerSec === 0) return undefined;
  return a.load.msgsPerSec / b.load.msgsPerSec;
}

function ratioCell(x: number | undefined): string {
  return x === undefined ? 'n/a' : `${x.toFixed(2)}×`;
}

/**
 * The ceiling's capacity: the better of its two runs (messages built per send, pre-built pool), so a
 * generator that cannot keep up with the ceiling does not make the ceiling look lower than it is.
 */
function ceilingOf(runs: Map<RunKind, RunResult> | undefined): RunResult | undefined {
  const a = runs?.get('ceiling');
  const b = runs?.get('ceiling-prebuilt');
  const ok = [a, b].filter((r): r is RunResult => r !== undefined && valid(r));
  if (ok.length === 0) return a;
  return ok.reduce((x, y) => (y.load.msgsPerSec > x.load.msgsPerSec ? y : x));
}

interface Target {
  readonly label: string;
  readonly pass: boolean | undefined;
  readonly detail: string;
}

function judge(all: Map<string, Map<RunKind, RunResult>>, fsync: FsyncProbe): Target[] {
  const targets: Target[] = [];
  const get = (sc: string, k: RunKind | 'ceiling-best'): RunResult | undefined => (k === 'ceiling-best' ? ceilingOf(all.get(sc)) : all.get(sc)?.get(k));
  const check = (label: string, sc: string, value: number | undefined, min: number, unit: string, extra = ''): void => {
    if (!all.has(sc)) return;
    const ferry = get(sc, 'ferry');
    if (ferry && !valid(ferry)) {
      targets.push({ label, pass: false, detail: `Ferry's ACKs were wrong: ${ackProblems(ferry.load)}` });
      return;
    }
    if (value === undefined) {
      targets.push({ label, pass: undefined, detail: 'n/a: a run it depends on has no valid figure' });
      return;
    }
    targets.push({ label, pass: value >= min, detail: `${value.toFixed(2)}${unit} (need ≥ ${min}${unit})${extra}` });
  };
  check('32×1: Ferry ≥ 2× node-hl7-server', '32×1', ratio(get('32×1', 'ferry'), get('32×1', 'hl7')), 2, '×');
  check('32×1: Ferry ≥ 0.3× ceiling', '32×1', ratio(get('32×1', 'ferry'), get('32×1', 'ceiling-best')), 0.3, '×');
  if (all.has('1×1')) {
    const ceiling = get('1×1', 'ceiling-best');
    const ferry = get('1×1', 'ferry');
    if (ceiling && ferry && valid(ceiling) && valid(ferry)) {
      const bar = 0.2 * ceiling.load.msgsPerSec;
      if (bar > fsync.perSecond) {
        const need = 0.8 * fsync.perSecond;
        targets.push({
          label: '1×1: Ferry ≥ 0.8× fsync rate (rule used: 0.2× ceiling is above the fsync limit)',
          pass: ferry.load.msgsPerSec >= need,
          detail: `${fmtRate(ferry.load.msgsPerSec)} msgs/s = ${(ferry.load.msgsPerSec / fsync.perSecond).toFixed(2)}× the fsync rate ${fmtRate(fsync.perSecond)}/s (need ≥ ${fmtRate(need)} msgs/s; 0.2× ceiling would be ${fmtRate(bar)})`,
        });
      } else {
        check('1×1: Ferry ≥ 0.2× ceiling (rule used: 0.2× ceiling is within the fsync limit)', '1×1', ratio(ferry, ceiling), 0.2, '×', ` (fsync rate ${fmtRate(fsync.perSecond)}/s)`);
      }
    } else {
      check('1×1: Ferry ≥ 0.2× ceiling', '1×1', undefined, 0.2, '×');
    }
  }
  check('8×64: Ferry ≥ 0.15× ceiling', '8×64', ratio(get('8×64', 'ferry'), get('8×64', 'ceiling-best')), 0.15, '×');
  return targets;
}

interface FsyncReading {
  readonly when: string;
  readonly overwrite: FsyncProbe;
  readonly append: FsyncProbe;
}

function probeDisk(dir: string, when: string): FsyncReading {
  const overwrite = probeFsync(dir, FSYNC_S / 2, false);
  const append = probeFsync(dir, FSYNC_S / 2, true);
  log(`fsync ${when}: ${fmtRate(overwrite.perSecond)}/s overwrite (mean ${overwrite.meanMs.toFixed(2)} ms), ${fmtRate(append.perSecond)}/s append (mean ${append.meanMs.toFixed(2)} ms)`);
  return { when, overwrite, append };
}

function report(
  all: Map<string, Map<RunKind, RunResult>>,
  readings: FsyncReading[],
  info: ReturnType<typeof machineInfo>,
  loads: { before: string; after: string },
  elapsedS: number,
  e2e: Map<string, E2eResult>,
  drain: DrainResult | undefined,
  drainError: string | undefined,
): { text: string; targets: Target[] } {
  const out: string[] = [];
  // The disk is shared too: the best reading is its capacity (and the strictest limit for the 1×1 rule).
  const best = readings.reduce((a, b) => (b.overwrite.perSecond > a.overwrite.perSecond ? b : a));
  const fsync = best.overwrite;
  const bestAppend = readings.reduce((a, b) => (b.append.perSecond > a.append.perSecond ? b : a)).append;
  const sample = realisticMessage('B0000X0', 0).length / 2 + realisticMessage('B0000X0', 1).length / 2;
  out.push('# Ferry MLLP ingest benchmark', '');
  out.push(`- Machine: ${info.cpuModel}, ${info.cores} cores, ${info.memTotalGiB.toFixed(1)} GiB RAM, Linux ${info.kernel}; Node ${info.node}`);
  out.push(`- Code: ${gitState()}`);
  out.push(`- Date: ${info.date}; load average before ${loads.before}, after ${loads.after}; bench took ${elapsedS.toFixed(0)} s`);
  out.push(`- Each run: ${WARMUP_S} s warm-up, then ${MEASURE_S} s measured, ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}; C connections × W frames in flight per connection; loopback; messages alternate ADT^A01 / ORU^R01, ${Math.round(sample)} bytes on average, unique MSH-10 each`);
  out.push('- Every ACK checked in order per connection: MSA-1 = AA and MSA-2 = the MSH-10 sent; throughput is responses received in the measured window per second; latency is send → ACK');
  out.push('- Servers run in their own processes; the load generator runs in the bench process. CPU is % of one core over the measured window');
  out.push(`- Ferry: built agent (\`node dist/agent/main.js run\`), fresh data dir per scenario, WAL + synchronous=FULL + AES-256-GCM, default dedupe window; log_level info (nothing is logged per message: see "log lines under load")`);
  out.push(
    `- Disk (same temp dir as the agent's data): **${fmtRate(fsync.perSecond)} fsyncs/s** (${fsync.how}: mean ${fsync.meanMs.toFixed(2)} ms, p99 ${fsync.p99Ms.toFixed(2)} ms, best of ${readings.length} readings); ${bestAppend.how}: ${fmtRate(bestAppend.perSecond)}/s (mean ${bestAppend.meanMs.toFixed(2)} ms). The overwrite figure is the limit used below (a WAL in steady state rewrites an allocated file). Every reading, overwrite / append per second: ${readings.map((r) => `${r.when} ${fmtRate(r.overwrite.perSecond)} / ${fmtRate(r.append.perSecond)}`).join('; ')}`,
  );
  out.push('');
  out.push('## Throughput and latency', '');
  out.push(`Best of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'} per server (every round's msgs/s in the last column). "others" is CPU used meanwhile by everything else on the machine: a high figure means that run was disturbed.`, '');
  out.push('| scenario | server | msgs/s | p50 ms | p99 ms | server CPU | client CPU | others | server peak RSS | ACKs | rounds msgs/s |');
  out.push('|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|');
  for (const [name, runs] of all) {
    for (const kind of ['ceiling', 'hl7', 'ferry'] as const) {
      const r = runs.get(kind);
      if (!r) continue;
      const l = r.load;
      const acks = ackProblems(l) || `all ${l.responses.toLocaleString('en-US')} OK`;
      const roundFigures = (r.rounds ?? []).map((x) => (Number.isFinite(x) ? fmtRate(x) : 'n/a')).join(' / ');
      out.push(`| ${name} | ${SERVER_LABEL[kind]} | ${rateCell(r)} | ${fmt(l.p50Ms)} | ${fmt(l.p99Ms)} | ${pct(r.serverCpuSeconds, l.windowSeconds)} | ${pct(l.clientCpuSeconds, l.windowSeconds)} | ${pct(r.othersCpuSeconds, l.windowSeconds)} | ${mib(r.peakRss)} | ${acks} | ${roundFigures} |`);
    }
  }
  out.push('');
  out.push('## Ratios', '');
  out.push('The ceiling figure is the better of its two runs (messages built per send, or a pre-built pool; see the last section).', '');
  out.push('| scenario | Ferry msgs/s | ceiling msgs/s | node-hl7-server msgs/s | Ferry / ceiling | Ferry / node-hl7-server |');
  out.push('|---|--:|--:|--:|--:|--:|');
  for (const [name, runs] of all) {
    const ceiling = ceilingOf(runs);
    const which = ceiling?.kind === 'ceiling-prebuilt' ? ' (pre-built)' : '';
    out.push(`| ${name} | ${rateCell(runs.get('ferry'))} | ${rateCell(ceiling)}${which} | ${rateCell(runs.get('hl7'))} | ${ratioCell(ratio(runs.get('ferry'), ceiling))} | ${ratioCell(ratio(runs.get('ferry'), runs.get('hl7')))} |`);
  }
  const e2eSection = endToEndSection(all, e2e, drain, drainError, fsync);
  const targets = [...judge(all, fsync), ...e2eSection.targets];
  out.push('');
  out.push('## Targets', '');
  for (const t of targets) out.push(`- **${t.pass === undefined ? 'N/A' : t.pass ? 'PASS' : 'FAIL'}** ${t.label}: ${t.detail}`);
  out.push('');
  out.push('## Ferry agent: memory and group commit', '');
  out.push(
    'Agent CPU is split into the JS main thread and all other threads (SQLite statements run on the libuv pool threads; V8 GC/compiler helpers). "Waiting for CPU" is run-queue time from /proc/PID/task/*/schedstat: runnable, but no core free (the load generator and everything else on the machine hold them). Idle RSS is read 0.5 s after start-up, peak RSS every 100 ms under load.',
    '',
  );
  out.push('| scenario | idle RSS | peak RSS | agent CPU (main / other threads) | waiting for CPU (main / other threads) | commits/s | msgs per commit (mean) | commit ms (mean) | commit sizes (messages: commits) | log lines under load |');
  out.push('|---|--:|--:|--:|--:|--:|--:|--:|---|--:|');
  for (const [name, runs] of all) {
    const r = runs.get('ferry');
    if (!r?.ferry) continue;
    const d = r.ferry;
    const secs = r.load.windowSeconds;
    const sizes = d.sizeBuckets.map(([le, n]) => `≤${le}: ${n}`).join(', ') || 'n/a';
    out.push(
      `| ${name} | ${mib(r.idleRss)} | ${mib(r.peakRss)} | ${pct(r.serverCpuSeconds, secs)} (${threadSplit(r.threads, secs)}) | ${pct(r.sched.mainWait, secs)} / ${pct(r.sched.otherWait, secs)} | ${fmtRate(d.commits / secs)} | ${d.commits > 0 ? (d.messagesCommitted / d.commits).toFixed(1) : 'n/a'} | ${d.commits > 0 ? ((d.commitSecondsSum / d.commits) * 1000).toFixed(2) : 'n/a'} | ${sizes} | ${d.logLinesUnderLoad} |`,
    );
  }
  if (CLIENT_CHECK) {
    out.push('');
    out.push('## Is the load generator the bottleneck?', '');
    out.push('The ceiling is driven twice: with messages built per send (as for every server) and with a pre-built pool. Equal rates mean building messages does not limit the client; the CPU columns show which process saturates its core (2 cores: one for the server, one for the generator).', '');
    out.push('| scenario | ceiling, built per send | ceiling, pre-built | ceiling CPU (built / pre-built) | client CPU (built / pre-built) |');
    out.push('|---|--:|--:|--:|--:|');
    for (const [name, runs] of all) {
      const a = runs.get('ceiling');
      const b = runs.get('ceiling-prebuilt');
      if (!a || !b) continue;
      out.push(
        `| ${name} | ${rateCell(a)} | ${rateCell(b)} | ${pct(a.serverCpuSeconds, a.load.windowSeconds)} / ${pct(b.serverCpuSeconds, b.load.windowSeconds)} | ${pct(a.load.clientCpuSeconds, a.load.windowSeconds)} / ${pct(b.load.clientCpuSeconds, b.load.windowSeconds)} |`,
      );
    }
  }
  out.push('', ...e2eSection.lines);
  const notes: string[] = [];
  for (const [name, e] of e2e) if (e.load.firstProblem) notes.push(`- ${name} end to end: first problem: ${e.load.firstProblem}`);
  for (const [name, runs] of all) {
    for (const [kind, r] of runs) {
      if (r.load.firstProblem) notes.push(`- ${name} ${kind}: first problem: ${r.load.firstProblem}`);
      if (r.peerStderr) notes.push(`- ${name} ${kind}: server counters: ${r.peerStderr}`);
      if (r.ferry && r.ferry.logLinesUnderLoad > 0) notes.push(`- ${name} ferry log lines under load, e.g. ${r.ferry.logSample.join(' | ')}`);
    }
  }
  if (notes.length > 0) out.push('', '## Notes', '', ...notes);
  out.push('');
  return { text: out.join('\n'), targets };
}

/** HEAD and whether product files differ from it: the numbers describe the working tree as built. */
function gitState(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'agent', 'control-plane', 'proto', 'test/helpers'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.trim() !== '' && !/\.test\.ts$/.test(l))
      .map((l) => l.slice(3));
    return dirty.length === 0 ? `commit ${head}, agent/, control-plane/, proto/ unmodified` : `commit ${head} plus uncommitted changes to ${dirty.join(', ')}`;
  } catch {
    return 'not a git checkout';
  }
}

// ---- end to end and drain ----------------------------------------------------------------------

const e2eErrors = new Map<string, string[]>();

/** Agent-only runs beside a CPU load like the control plane's in the end-to-end run (a diagnostic, not a target). */
const contendedRuns = new Map<string, { readonly result: RunResult; readonly share: number; readonly measuredShare: number }>();

/**
 * The agent alone (no uplink) again, beside a process that keeps `share` of one core busy: the
 * control plane's CPU share in the end-to-end run. On a 2-core machine that also runs the load
 * generator, this separates what sharing the cores with a control plane costs ingest from what the
 * uplink itself costs (in production the control plane is elsewhere).
 */
async function runContended(sc: Scenario, base: string, share: number): Promise<void> {
  const load = startCpuLoad(share);
  let server: FerryServer | undefined;
  try {
    const cpu0 = cpuSeconds(load.pid) ?? 0;
    const t0 = performance.now();
    server = await startFerry(base);
    const result = await measure('ferry', server, sc, realisticSource(prefix('ferry')));
    const measuredShare = ((cpuSeconds(load.pid) ?? 0) - cpu0) / ((performance.now() - t0) / 1000);
    contendedRuns.set(sc.name, { result, share, measuredShare });
    log(`${sc.name.padEnd(4)} agent-only beside a ${Math.round(measuredShare * 100)}% CPU load (the control plane's share end to end): ${fmtRate(result.load.msgsPerSec)} msgs/s`);
  } catch (err) {
    log(`${sc.name} agent-only beside a CPU load failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await server?.stop();
    await load.stop();
  }
}

async function runE2eScenario(sc: Scenario, base: string, round: number): Promise<E2eResult | undefined> {
  try {
    const r = await runE2e({ baseDir: base, c: sc.c, w: sc.w, name: sc.name, prefix: prefix('e2e'), warmupMs: WARMUP_S * 1000, measureMs: MEASURE_S * 1000, graceMs: GRACE_S * 1000 });
    const l = r.load;
    log(
      `round ${round + 1} ${sc.name.padEnd(4)} ${'end to end'.padEnd(16)} ${fmtRate(l.msgsPerSec).padStart(8)} msgs/s  p50 ${fmt(l.p50Ms)} ms  p99 ${fmt(l.p99Ms)} ms  ` +
        `agent CPU ${pct(r.agentCpuSeconds, l.windowSeconds)}  control plane CPU ${pct(r.cpCpuSeconds, l.windowSeconds)}  client CPU ${pct(l.clientCpuSeconds, l.windowSeconds)}  ` +
        `caught up ${fmt(r.catchUpSeconds)} s after the load; ${r.verification.ok ? 'stored exactly once' : `NOT VERIFIED: ${r.verification.detail}`}` +
        (ackProblems(l) ? `  ACK problems: ${ackProblems(l)}` : ''),
    );
    return r;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    log(`round ${round + 1} ${sc.name} end to end failed: ${msg}`);
    e2eErrors.set(sc.name, [...(e2eErrors.get(sc.name) ?? []), `round ${round + 1}: ${msg.split('\n')[0]}`]);
    return undefined;
  }
}

function e2eValid(r: E2eResult): boolean {
  return r.verification.ok && ackProblems(r.load) === '' && r.load.windowResponses > 0;
}

/** The round with the highest valid end-to-end rate (a round that lost or duplicated a message wins, so it is shown). */
function bestE2e(list: (E2eResult | undefined)[]): E2eResult {
  const runs = list.filter((r): r is E2eResult => r !== undefined);
  const invalid = runs.find((r) => !e2eValid(r));
  let best = invalid ?? runs[0]!;
  if (!invalid) for (const r of runs) if (r.load.msgsPerSec > best.load.msgsPerSec) best = r;
  return { ...best, rounds: list.map((r) => (r && e2eValid(r) ? r.load.msgsPerSec : NaN)) };
}

function endToEndSection(all: Map<string, Map<RunKind, RunResult>>, e2e: Map<string, E2eResult>, drain: DrainResult | undefined, drainError: string | undefined, fsync: FsyncProbe): { lines: string[]; targets: Target[] } {
  const out: string[] = [];
  const targets: Target[] = [];
  if (e2e.size === 0 && !drain && !drainError && e2eErrors.size === 0) return { lines: out, targets };
  out.push('## End to end and drain', '');
  out.push(
    'The built control plane (`ferry-control-plane serve`, SQLite store, log_level debug for its one line per committed batch) and an agent enrolled with it (`ferry-agent enroll`, token on stdin), each in its own process, fresh data dirs per run; the same load generator and messages as above. ' +
      'End to end: uplink enabled, throughput is ACKed msgs/s in the measured window; then the bench waits until the agent\'s /status uplink pending count is 0 and reads the control plane\'s store (read-only, sqlite3): it must hold exactly the ACKed messages, each control id and seq once.',
    '',
  );
  if (e2e.size > 0 || e2eErrors.size > 0) {
    out.push('| scenario | agent-only msgs/s | end to end msgs/s | end to end / agent-only | e2e p50 / p99 ms | agent-only p50 / p99 ms | control plane stored in window, msgs/s | pending at window end | caught up after load | delivered | rounds msgs/s |');
    out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|');
    for (const [name, r] of e2e) {
      const agentOnly = all.get(name)?.get('ferry');
      const l = r.load;
      const secs = l.windowSeconds;
      const ok = e2eValid(r);
      const x = agentOnly && valid(agentOnly) && ok ? l.msgsPerSec / agentOnly.load.msgsPerSec : undefined;
      out.push(
        `| ${name} | ${agentOnly ? rateCell(agentOnly) : 'n/a (scenario not run)'} | ${ok ? fmtRate(l.msgsPerSec) : `n/a (${fmtRate(l.msgsPerSec)})`} | ${ratioCell(x)} | ${fmt(l.p50Ms)} / ${fmt(l.p99Ms)} | ${agentOnly ? `${fmt(agentOnly.load.p50Ms)} / ${fmt(agentOnly.load.p99Ms)}` : 'n/a'} | ` +
          `${fmtRate(r.cpStoredInWindow / secs)} | ${fmtRate(r.pendingAtWindowEnd)} | ${fmt(r.catchUpSeconds)} s | ${r.verification.ok ? 'exactly once' : '**NOT VERIFIED**'}: ${r.verification.detail}${ackProblems(l) ? `; ACK problems: ${ackProblems(l)}` : ''} | ${(r.rounds ?? []).map((v) => (Number.isFinite(v) ? fmtRate(v) : 'n/a')).join(' / ')} |`,
      );
      if (agentOnly) {
        targets.push(
          agentOnly && valid(agentOnly) && ok
            ? { label: `${name}: end to end ≥ 0.8× agent-only`, pass: x! >= 0.8, detail: `${fmtRate(l.msgsPerSec)} vs ${fmtRate(agentOnly.load.msgsPerSec)} msgs/s = ${x!.toFixed(2)}× (need ≥ 0.8×)` }
            : { label: `${name}: end to end ≥ 0.8× agent-only`, pass: ok ? undefined : false, detail: ok ? 'n/a: the agent-only run has no valid figure' : `the end-to-end run is not valid: ${r.verification.detail}${ackProblems(l) ? `; ${ackProblems(l)}` : ''}` },
        );
      }
      targets.push({ label: `${name}: every ACKed message stored exactly once at the control plane`, pass: r.verification.ok, detail: r.verification.detail });
    }
    for (const [name, errs] of e2eErrors) {
      out.push(`| ${name} | | failed | | | | | | | ${errs.join('; ')} | |`);
      if (!e2e.has(name)) targets.push({ label: `${name}: end to end`, pass: false, detail: errs.join('; ') });
    }
    out.push('');
    if (contendedRuns.size > 0) {
      out.push(
        'Diagnostic (not a target): the agent alone again, uplink off, beside a process that keeps busy the share of a core the control plane used end to end. ' +
          'On this 2-core machine the control plane, the agent and the load generator share the cores; this row shows what that sharing costs ingest without any uplink.',
        '',
      );
      out.push('| scenario | CPU load beside it, measured (asked: the control plane\'s share end to end) | agent-only beside it, msgs/s | end to end msgs/s | end to end / agent-only beside the load | agent-only alone, msgs/s |');
      out.push('|---|--:|--:|--:|--:|--:|');
      for (const [name, c] of contendedRuns) {
        const r = e2e.get(name);
        const alone = all.get(name)?.get('ferry');
        const x = r && valid(c.result) && e2eValid(r) ? r.load.msgsPerSec / c.result.load.msgsPerSec : undefined;
        out.push(`| ${name} | ${Math.round(c.measuredShare * 100)}% (${Math.round(c.share * 100)}%) | ${rateCell(c.result)} | ${r ? fmtRate(r.load.msgsPerSec) : 'n/a'} | ${ratioCell(x)} | ${alone ? rateCell(alone) : 'n/a'} |`);
      }
      out.push('');
    }
    out.push('Where the time goes in the measured window (CPU as % of one core; "others" is everything else on the machine). Control-plane batches: from its per-batch log line (commit_ms = store.ingestBatch, one transaction per batch); commit share = sum of commit times / window, i.e. how much of the time the single stream waits on the store.', '');
    out.push('| scenario | agent CPU (main / other threads) | control plane CPU | client CPU | others | agent msgs per uplink batch | control-plane batches | msgs per batch (mean) | commit ms mean / p99 | commit share | agent peak RSS | control plane peak RSS |');
    out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const [name, r] of e2e) {
      const secs = r.load.windowSeconds;
      const b = r.batches;
      out.push(
        `| ${name} | ${pct(r.agentCpuSeconds, secs)} (${threadSplit(r.agentThreads, secs)}) | ${pct(r.cpCpuSeconds, secs)} | ${pct(r.load.clientCpuSeconds, secs)} | ${pct(r.othersCpuSeconds, secs)} | ${fmt(r.agentBatchMean, 1)} | ${b.count} | ${fmt(b.meanMessages, 1)} | ${fmt(b.meanCommitMs)} / ${fmt(b.p99CommitMs)} | ${Number.isFinite(b.commitShare) ? `${Math.round(b.commitShare * 100)}%` : 'n/a'} | ${mib(r.agentPeakRss)} | ${mib(r.cpPeakRss)} |`,
      );
    }
    out.push('');
  }
  const base32 = all.get('32×1')?.get('ferry');
  if (drain) {
    const d = drain;
    out.push(
      `Drain: a backlog of ${d.backlog.toLocaleString('en-US')} messages loaded over MLLP 8×64 with \`uplink.enabled: false\` (control plane up, agent not sending), then the agent restarted on the same data dir with the uplink enabled and timed from its "agent started" line until /status pending is 0 (polled every 25 ms); the control plane's store is then checked as above. ` +
        'Ceiling: the same number of envelopes (same payload sizes, sha256 and metadata; batches of the Welcome\'s 512 messages / 4 MiB, 4 in flight) over one grpc-js stream of the same contract (proto/index.ts) into a sink process that acknowledges each batch at once (grpc-sink.ts), run right after.',
      '',
    );
    const c = d.ceiling;
    const vs32 = base32 && valid(base32) ? d.msgsPerSec / base32.load.msgsPerSec : undefined;
    out.push('| backlog | loaded at (MLLP 8×64, uplink off) | drain msgs/s | drain incl. agent start-up | agent-only 32×1 msgs/s | drain / agent-only 32×1 | gRPC sink ceiling msgs/s | drain / ceiling | delivered |');
    out.push('|--:|--:|--:|--:|--:|--:|--:|--:|---|');
    out.push(
      `| ${d.backlog.toLocaleString('en-US')} | ${fmtRate(d.fill.msgsPerSec)} | ${fmtRate(d.msgsPerSec)} (${d.drainSeconds.toFixed(2)} s) | ${fmtRate(d.msgsPerSecWithStart)} (${d.drainWithStartSeconds.toFixed(2)} s) | ${base32 ? rateCell(base32) : 'n/a (32×1 not run)'} | ${ratioCell(vs32)} | ${c ? fmtRate(c.msgsPerSec) : `n/a${d.ceilingError ? ` (${d.ceilingError})` : ''}`} | ${c ? ratioCell(d.msgsPerSec / c.msgsPerSec) : 'n/a'} | ${d.verification.ok ? 'exactly once' : '**NOT VERIFIED**'}: ${d.verification.detail} |`,
    );
    out.push('');
    const secs = d.drainSeconds;
    const b = d.batches;
    const split = (x: { anon: number; file: number } | undefined): string => (x ? `${mib(x.anon)} + ${mib(x.file)}` : 'n/a');
    out.push(`Agent RSS split (RssAnon + RssFile/RssShmem): at start ${split(d.agentRssSplitStart)}, at the end ${split(d.agentRssSplitEnd)}. "others" excludes the bench process (its /status polling: ${pct(d.benchCpuSeconds, d.drainSeconds)}).`, '');
    if (d.agentMemoryMapStart && d.agentMemoryMapEnd) {
      out.push(`Agent memory by mapping (/proc/PID/smaps, Rss): at start ${d.agentMemoryMapStart}; at the end ${d.agentMemoryMapEnd}${d.agentHeapEnd ? `; V8 at the end: ${d.agentHeapEnd}` : ''}.`, '');
    }
    out.push('| agent RSS at start / peak / end | agent CPU (main / other threads) | control plane CPU | others | control-plane batches | msgs per batch (mean) | commit ms mean / p99 | commit share | ceiling: client CPU / sink CPU, batches |');
    out.push('|---|--:|--:|--:|--:|--:|--:|--:|---|');
    out.push(
      `| ${mib(d.agentRssStart)} / ${mib(d.agentRssPeak)} / ${mib(d.agentRssEnd)} | ${pct(d.agentCpuSeconds, secs)} (${threadSplit(d.agentThreads, secs)}) | ${pct(d.cpCpuSeconds, secs)} | ${pct(d.othersCpuSeconds, secs)} | ${b.count} | ${fmt(b.meanMessages, 1)} | ${fmt(b.meanCommitMs)} / ${fmt(b.p99CommitMs)} | ${Number.isFinite(b.commitShare) ? `${Math.round(b.commitShare * 100)}%` : 'n/a'} | ${c ? `${pct(c.clientCpuSeconds, c.seconds)} / ${pct(c.sinkCpuSeconds, c.seconds)}, ${c.batches} batches of ≤ ${c.maxBatchMessages}, ${c.maxInFlightBatches} in flight` : 'n/a'} |`,
    );
    out.push('');
    out.push(`- Disk in this run: ${fmtRate(fsync.perSecond)} fsyncs/s (${fsync.how}, best reading; every reading is listed at the top, including one just before the drain).`);
    out.push('');
    targets.push(
      vs32 !== undefined
        ? { label: 'drain ≥ 2× agent-only ingest at 32×1', pass: vs32 >= 2, detail: `${fmtRate(d.msgsPerSec)} vs ${fmtRate(base32!.load.msgsPerSec)} msgs/s = ${vs32.toFixed(2)}× (need ≥ 2×)${c ? `; gRPC ceiling ${fmtRate(c.msgsPerSec)} msgs/s` : ''}` }
        : { label: 'drain ≥ 2× agent-only ingest at 32×1', pass: undefined, detail: 'n/a: no valid agent-only 32×1 figure in this run' },
    );
    targets.push({ label: 'drain: every backlog message stored exactly once at the control plane', pass: d.verification.ok, detail: d.verification.detail });
    const growth = d.agentRssPeak - d.agentRssStart;
    targets.push({
      label: 'drain: agent RSS stays flat (bench rule: peak ≤ RSS at start + 64 MiB)',
      pass: growth <= 64 * 1024 * 1024,
      detail: `start ${mib(d.agentRssStart)}, peak ${mib(d.agentRssPeak)} (+${mib(growth)}), end ${mib(d.agentRssEnd)}; backlog ${(d.backlog * 1.5 / 1024).toFixed(0)} MiB of payload`,
    });
  } else if (drainError) {
    out.push(`Drain: **failed**: ${drainError}`, '');
    targets.push({ label: 'drain ≥ 2× agent-only ingest at 32×1', pass: false, detail: `the drain run failed: ${drainError.split('\n')[0]}` });
  }
  if (targets.length > 0) {
    out.push('Targets (issue 3), also listed under "Targets" above:', '');
    for (const t of targets) out.push(`- **${t.pass === undefined ? 'N/A' : t.pass ? 'PASS' : 'FAIL'}** ${t.label}: ${t.detail}`);
    out.push('');
  }
  return { lines: out, targets };
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const info = machineInfo();
  const loadBefore = loadAverage();
  const base = tempBase();
  log(`temp dir ${base}; ${SCENARIOS.map((s) => s.name).join(', ')}; ${WARMUP_S} s warm-up + ${MEASURE_S} s per run`);
  try {
    if (CPU_PROF_DIR) mkdirSync(CPU_PROF_DIR, { recursive: true });
    const readings: FsyncReading[] = [];
    const rounds = new Map<string, Map<RunKind, RunResult>[]>(SCENARIOS.map((sc) => [sc.name, []]));
    const e2eRounds = new Map<string, (E2eResult | undefined)[]>(E2E_SCENARIOS.map((sc) => [sc.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      readings.push(probeDisk(base, `before round ${round + 1}`));
      for (const sc of SCENARIOS) rounds.get(sc.name)!.push(await runScenario(sc, base, round));
      for (const sc of E2E_SCENARIOS) e2eRounds.get(sc.name)!.push(await runE2eScenario(sc, base, round));
    }
    if (process.env.BENCH_E2E_CONTENDED !== '0') {
      for (const sc of E2E_SCENARIOS) {
        const done = e2eRounds.get(sc.name)!.filter((r): r is E2eResult => r !== undefined);
        if (done.length === 0) continue;
        const best = bestE2e(done);
        await runContended(sc, base, best.cpCpuSeconds / best.load.windowSeconds);
      }
    }
    let drain: DrainResult | undefined;
    let drainError: string | undefined;
    if (DRAIN_MESSAGES > 0) {
      readings.push(probeDisk(base, 'before the drain'));
      try {
        drain = await runDrain({ baseDir: base, messages: DRAIN_MESSAGES, prefix: prefix('drain'), graceMs: GRACE_S * 1000, ceiling: DRAIN_CEILING });
      } catch (err) {
        drainError = err instanceof Error ? err.message : String(err);
        log(`drain failed: ${drainError}`);
      }
    }
    // File drops and import (files.ts); BENCH_FILES=0 skips them.
    let files: FilesBenchResult | undefined;
    if (process.env.BENCH_FILES !== '0') {
      try {
        files = await runFilesBench(base, log);
      } catch (err) {
        files = { markdown: `### File drops and import\n\nfailed: ${err instanceof Error ? err.message : String(err)}`, ok: false };
        log(`files bench failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Fleet scale (issue 4): BENCH_FLEET=0 skips it.
    let fleet: FleetResult | undefined;
    if (process.env.BENCH_FLEET !== '0') {
      try {
        fleet = await runFleetBench({ baseDir: base, log });
      } catch (err) {
        log(`fleet benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    readings.push(probeDisk(base, 'at the end'));
    const all = new Map<string, Map<RunKind, RunResult>>();
    for (const [name, list] of rounds) all.set(name, bestOfRounds(list));
    const e2e = new Map<string, E2eResult>();
    for (const [name, list] of e2eRounds) if (list.some((r) => r !== undefined)) e2e.set(name, bestE2e(list));
    const reported = report(all, readings, info, { before: loadBefore, after: loadAverage() }, (performance.now() - started) / 1000, e2e, drain, drainError);
    const targets = reported.targets;
    const text = [reported.text, files?.markdown, fleet?.text].filter((t): t is string => t !== undefined).join('\n\n');
    process.stdout.write(text + '\n');
    const dir = join(REPO_ROOT, 'test', 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'latest.md'), text + '\n');
    log(`written to ${join(dir, 'latest.md')}`);
    const ferryWrong = [...all.values()].some((runs) => {
      const f = runs.get('ferry');
      return f !== undefined && !valid(f);
    });
    if (ferryWrong) {
      log('FAIL: Ferry answered with wrong or missing ACKs');
      return 1;
    }
    const lost = [...e2eRounds.values()].flat().some((e) => e === undefined || !e.verification.ok || ackProblems(e.load) !== '') || (drain !== undefined && !drain.verification.ok) || drainError !== undefined;
    if (lost) {
      log('FAIL: end to end or drain: a message ACKed by the agent was not stored exactly once at the control plane (or the run failed)');
      return 1;
    }
    if (files && !files.ok) {
      log('FAIL: file bench: a run did not take every file');
      return 1;
    }
    if (STRICT && targets.some((t) => t.pass === false)) return 1;
    return 0;
  } finally {
    killAllChildren();
    if (!KEEP) rmSync(base, { recursive: true, force: true });
  }
}

process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}

/** The bench exits by itself: if a stray handle (a socket, a keep-alive) outlives the work, go anyway. */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 5000).unref();
}

main().then(exitSoon, (err: unknown) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  killAllChildren();
  exitSoon(1);
});
