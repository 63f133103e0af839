// Fleet scale benchmark (issue 4): N simulated agents with real credentials, spread over a few
// child processes (fleet-sim.ts, raw MQTT), each publishing a retained QoS 1 status and QoS 0
// telemetry every second to the built control plane's embedded broker. For N stepping up it
// measures, in the steady state after every agent has connected:
//   status lag (API)    the status's send time → first seen in GET /api/v1/agents/{id}, on a sample
//                       of agents polled every 250 ms (so up to 250 ms of it is polling)
//   status lag (store)  the same → first seen in the store's agent_status table (the 250 ms flush),
//                       read from store.db read-only by this process
// plus connect time (CONNECT → CONNACK), time to connect every agent, drops/reconnects/errors, the
// control plane's CPU and RSS, the simulators' CPU and the whole machine's CPU, and GET
// /api/v1/agents (the full list) latency. It reports the largest N whose API lag p99 stays < 5 s
// with every agent connected and no sampled agent stale. Control plane and simulators share the
// machine's cores: the report says how many.
//
// Credentials: the agents are created in bulk before the control plane starts, straight in its
// store (one transaction, the same salted HMAC and Mosquitto hash enrollment makes); the broker
// then verifies each real secret on connect exactly as for an enrolled agent. Enrolling 10,000
// agents one by one over HTTP took minutes and measured nothing this benchmark is about.
//
// What held it back at 5,000 before (and was fixed in control-plane/fleet/broker): every SUBSCRIBE
// scanned all retained messages (one policy per enrolled agent) — O(agents²) per connect wave, so
// CONNACKs took tens of seconds and agents timed out (retained-index.ts); and each MQTT packet the
// broker sent became several socket writes (packet-limit.ts _writev). What limits it now: the
// control plane's one JS thread (a PUBACK write per status, JSON + schema checks, GC) on a machine
// whose 2 cores it shares with the simulators; the store flush (every status written) trails
// further behind than the API at 8,000+. Past that, overload shows as queueing: CONNACKs, API reads
// and flushes wait behind the message work (the thread is busy, not idle), so a single cold
// 10,000-agent connect wave gets CONNACK timeouts, retries and API answers tens of seconds late.
// The table is the step-up (at most 3,000 new agents per step, then a steady state).
//
// Open files: the control plane holds one socket per agent, each simulator one per agent it runs;
// the benchmark checks the soft RLIMIT_NOFILE (inherited by the children) against that and stops
// with the `ulimit -n` to set when it is too low.
//
// Environment:
//   BENCH_FLEET=0          skip (run.ts)
//   BENCH_FLEET_FULL=1     the full step-up: 1000,2000,5000,8000,10000 agents, 20 s measured each
//                          (stops at the first step over the limit; ~4 min), written to
//                          test/bench/results/fleet.md. Without it the quick default is 1000,5000
//                          agents, 10 s each (~1 min), which still answers the ≥ 5,000 target.
//   BENCH_FLEET_STEPS      explicit steps, e.g. "500,1000"
//   BENCH_FLEET_SECONDS    measured seconds per step
//   BENCH_FLEET_SIMS       simulator processes (default 4)
//   BENCH_FLEET_SAMPLE     agents polled for lag (default 50)
//   BENCH_FLEET_CONNECT_RATE  new connections per second over all simulators (default 500)
//   BENCH_FLEET_LIST_SECS  how often GET /api/v1/agents (the full list) is called (default 1; 0: never)
//   BENCH_FLEET_CPU_PROF   a folder: the control plane writes a V8 CPU profile there

import { fork, type ChildProcess } from 'node:child_process';
import { createHmac, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sqlite3 from 'sqlite3';
import { adminToken, ControlPlaneApi, startControlPlane } from '../helpers/control-plane-process.js';
import { REPO_ROOT } from '../helpers/agent-process.js';
import { cpuSeconds, loadAverage, rssBytes, systemBusySeconds } from './procfs.js';
import { track } from './servers.js';
import type { SimCounters } from './fleet-sim.js';

const LAG_LIMIT_MS = 5000;
const POLL_MS = 250;

interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  samples: number;
}

export interface FleetStep {
  readonly agents: number;
  readonly connected: number;
  readonly refused: number;
  /** Seconds from handing the step's new agents to the simulators to all of them connected. */
  readonly connectSeconds: number;
  /** CONNECT → CONNACK of this step's connections (retries included). */
  readonly connectMs: Percentiles;
  /** Over the step (ramp + measure): retries, sessions dropped by the broker, socket errors, CONNACK timeouts. */
  readonly reconnects: number;
  readonly drops: number;
  readonly errors: Record<string, number>;
  readonly connectTimeouts: number;
  /** Drops during the measured window only (the steady state should have none). */
  readonly windowDrops: number;
  readonly statusPerSec: number;
  readonly pubacksPerSec: number;
  readonly lagMs: Percentiles;
  readonly storeLagMs: Percentiles;
  /** Sampled agents whose status never changed in the API during the window (starved). */
  readonly stale: number;
  /** GET /api/v1/agents (every agent) response time, ms. */
  readonly listMs: Percentiles;
  /** GET /api/v1/agents/{id} response time, ms (failed requests count as their time to fail). */
  readonly getMs: Percentiles;
  /** GET /api/v1/agents/{id} requests that failed. */
  readonly getErrors: number;
  readonly cpCpuPercent: number;
  readonly cpRssMiB: number;
  readonly simCpuPercent: number;
  /** Every process on the machine, % of one core (the machine has `cores` of them). */
  readonly machineCpuPercent: number;
  readonly ok: boolean;
}

export interface FleetResult {
  readonly steps: FleetStep[];
  readonly largestOk: number;
  readonly text: string;
}

interface SimProgress extends SimCounters {
  queued: number;
  cpu_secs: number;
}

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
  return n;
}

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (p: number): number => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
  return { p50: at(50), p95: at(95), p99: at(99), max: sorted[sorted.length - 1] ?? NaN, samples: sorted.length };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The soft limit on open files this process (and so its children) has. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : undefined;
  } catch {
    return undefined;
  }
}

/** The control plane's store file in its data directory (control-plane/store/sqlite). */
const STORE_FILE = 'store.db';

/** Minimal promise wrappers over sqlite3 (test/ imports nothing from control-plane/). */
const sql = {
  open: (path: string, mode: number): Promise<sqlite3.Database> => new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, mode, (err) => (err ? reject(err) : resolve(db)));
  }),
  exec: (db: sqlite3.Database, text: string): Promise<void> => new Promise((resolve, reject) => db.exec(text, (err) => (err ? reject(err) : resolve()))),
  run: (db: sqlite3.Database, text: string, params: unknown[]): Promise<void> => new Promise((resolve, reject) => db.run(text, params, (err: Error | null) => (err ? reject(err) : resolve()))),
  all: <T>(db: sqlite3.Database, text: string, params: unknown[]): Promise<T[]> => new Promise((resolve, reject) => db.all(text, params, (err, rows) => (err ? reject(err) : resolve(rows as T[])))),
  close: (db: sqlite3.Database): Promise<void> => new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve()))),
};

/**
 * Creates `count` agents in the store of a control plane that has run once (so the schema and the
 * default policy are its own) and is stopped, in one transaction: the rows enrollment writes — the
 * salted HMAC-SHA256 of a fresh 256-bit secret (control-plane/store/agent-secrets.ts) and its
 * Mosquitto hash — so the broker checks real secrets. Should that format change, every connection
 * is refused and the benchmark says so (refused > 0 fails a step).
 */
async function createAgentsInStore(dataDir: string, count: number): Promise<{ id: string; secret: string }[]> {
  const db = await sql.open(join(dataDir, STORE_FILE), sqlite3.OPEN_READWRITE);
  const agents: { id: string; secret: string }[] = [];
  try {
    await sql.exec(db, 'PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE');
    const now = Date.now();
    for (let i = 0; i < count; i++) {
      const id = randomUUID();
      const secret = randomBytes(32).toString('base64url');
      const salt = randomBytes(16);
      const hash = createHmac('sha256', salt).update(secret, 'utf8').digest();
      const mSalt = randomBytes(12);
      const mosquittoHash = `$7$101$${mSalt.toString('base64')}$${pbkdf2Sync(secret, mSalt, 101, 64, 'sha512').toString('base64')}`;
      await sql.run(db, 'INSERT INTO agents (id, name, policy_id, secret_salt, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)', [id, `bench-${i}`, 'default', salt, hash, now + i]);
      await sql.run(db, 'INSERT INTO agent_broker_credentials (agent_id, mosquitto_hash) VALUES (?, ?)', [id, mosquittoHash]);
      agents.push({ id, secret });
    }
    await sql.exec(db, 'COMMIT');
  } finally {
    await sql.close(db);
  }
  return agents;
}

interface Sim {
  readonly child: ChildProcess;
  progress: SimProgress;
  connectMs: number[];
}

export async function runFleetBench(options: { baseDir: string; log: (line: string) => void }): Promise<FleetResult> {
  const full = process.env.BENCH_FLEET_FULL === '1';
  const steps = (process.env.BENCH_FLEET_STEPS ?? (full ? '1000,2000,5000,8000,10000' : '1000,5000'))
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => a - b);
  const measureMs = envNumber('BENCH_FLEET_SECONDS', full ? 20 : 10) * 1000;
  const simCount = Math.max(1, Math.round(envNumber('BENCH_FLEET_SIMS', 4)));
  const sampleSize = Math.max(1, Math.round(envNumber('BENCH_FLEET_SAMPLE', 50)));
  const connectRate = Math.max(1, envNumber('BENCH_FLEET_CONNECT_RATE', 500));
  const listEveryMs = envNumber('BENCH_FLEET_LIST_SECS', 1) * 1000;
  const maxAgents = steps[steps.length - 1] ?? 0;
  const limit = openFileLimit();
  if (limit !== undefined && limit < maxAgents + 1000) {
    throw new Error(`the fleet benchmark needs about ${maxAgents + 1000} open files per process for ${maxAgents} agents but the soft limit is ${limit}: run \`ulimit -n ${maxAgents + 2000}\` first, or lower BENCH_FLEET_STEPS`);
  }
  const loadBefore = loadAverage();
  const dir = mkdtempSync(join(options.baseDir, 'fleet-'));
  const cpDir = join(dir, 'cp');
  const t = Date.now();
  // A first start creates the store as the control plane makes it; the agents go in while it is stopped.
  await (await startControlPlane({ dataDir: cpDir }, 60_000)).stop('SIGTERM');
  const agents = await createAgentsInStore(cpDir, maxAgents);
  options.log(`fleet: created ${agents.length} agents' credentials in the store in ${((Date.now() - t) / 1000).toFixed(1)} s; open-file limit ${limit ?? '?'}`);
  // BENCH_FLEET_CPU_PROF=<dir>: the control plane (only: the environment is restored before the
  // simulators start) writes a V8 CPU profile there when it stops (fleet-cpu-prof.ts).
  const profDir = process.env.BENCH_FLEET_CPU_PROF;
  const savedEnv = { NODE_OPTIONS: process.env.NODE_OPTIONS, FERRY_BENCH_CPU_PROF_DIR: process.env.FERRY_BENCH_CPU_PROF_DIR };
  if (profDir) {
    process.env.NODE_OPTIONS = `${savedEnv.NODE_OPTIONS ?? ''} --import=${pathToFileURL(join(REPO_ROOT, 'dist', 'test', 'bench', 'fleet-cpu-prof.js')).href}`.trim();
    process.env.FERRY_BENCH_CPU_PROF_DIR = resolve(profDir);
  }
  const cp = await startControlPlane({ dataDir: cpDir }, 60_000).finally(() => {
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const cpPid = cp.child.pid!;
  const mqttUrl = `mqtt://127.0.0.1:${cp.mqttPort}`;
  const api = new ControlPlaneApi(cp.url, adminToken(cp.dataDir));
  const storeDb = await sql.open(join(cpDir, STORE_FILE), sqlite3.OPEN_READONLY);
  await sql.exec(storeDb, 'PRAGMA busy_timeout = 5000;');
  const sims: Sim[] = [];
  for (let i = 0; i < simCount; i++) {
    const child = fork(join(REPO_ROOT, 'dist', 'test', 'bench', 'fleet-sim.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    track(child);
    const sim: Sim = { child, progress: { connected: 0, refused: 0, attempts: 0, reconnects: 0, drops: 0, connectTimeouts: 0, errors: {}, statusSent: 0, pubacks: 0, queued: 0, cpu_secs: 0 }, connectMs: [] };
    child.on('message', (m: SimProgress & { type: string; connect_ms: number[] }) => {
      if (m.type !== 'progress') return;
      sim.progress = m;
      sim.connectMs.push(...m.connect_ms);
    });
    sims.push(sim);
  }
  type NumericCounter = Exclude<keyof SimProgress, 'errors'>;
  const total = (k: NumericCounter): number => sims.reduce((n, s) => n + s.progress[k], 0);
  const errorTotals = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const s of sims) for (const [code, n] of Object.entries(s.progress.errors)) out[code] = (out[code] ?? 0) + n;
    return out;
  };
  const results: FleetStep[] = [];
  let handedOut = 0;
  try {
    for (const n of steps) {
      const added = agents.slice(handedOut, n);
      handedOut = n;
      const before = { reconnects: total('reconnects'), drops: total('drops'), timeouts: total('connectTimeouts'), errors: errorTotals() };
      for (const s of sims) s.connectMs = [];
      options.log(`fleet: connecting ${added.length} more agents (to ${n}) at ${connectRate}/s`);
      const rampStart = Date.now();
      for (let s = 0; s < sims.length; s++) sims[s]!.child.send({ type: 'add', url: mqttUrl, rate: connectRate / sims.length, agents: added.filter((_, i) => i % sims.length === s) });
      // Enough for the ramp at the set rate, plus retries with backoff, plus slack for a loaded machine.
      const until = rampStart + (added.length / connectRate) * 1000 * 3 + 120_000;
      let lastLog = Date.now();
      await sleep(1000); // progress messages come every 500 ms; let them report the new queue first
      while (total('connected') + total('refused') < n && Date.now() < until) {
        await sleep(250);
        if (Date.now() - lastLog >= 5000) {
          lastLog = Date.now();
          options.log(`fleet:   ${total('connected')}/${n} connected, ${total('queued')} queued, ${total('reconnects') - before.reconnects} retries`);
        }
      }
      const connectSeconds = total('connected') >= n ? (Date.now() - rampStart) / 1000 : NaN;
      options.log(`fleet: ${total('connected')} connected (${Number.isFinite(connectSeconds) ? `${connectSeconds.toFixed(1)} s` : 'not all in time'}), ${total('refused')} refused, ${total('reconnects') - before.reconnects} retries; settling`);
      // Steady state: every agent has published a few times and the ramp's work is behind us.
      await sleep(5000);
      const sample = [...agents.slice(0, n)].sort(() => Math.random() - 0.5).slice(0, sampleSize).map((a) => a.id);
      const apiSeen = new Map<string, string>();
      const storeSeen = new Map<string, string>();
      const changed = new Set<string>();
      const lags: number[] = [];
      const storeLags: number[] = [];
      const listTimes: number[] = [];
      const getTimes: number[] = [];
      let getErrors = 0;
      const cpu0 = cpuSeconds(cpPid);
      const busy0 = systemBusySeconds();
      const sim0 = total('cpu_secs');
      const sent0 = total('statusSent');
      const acks0 = total('pubacks');
      const drops0 = total('drops');
      const t0 = Date.now();
      const placeholders = sample.map(() => '?').join(',');
      const seen = (map: Map<string, string>, out: number[], id: string, version: string | null | undefined, at: number): boolean => {
        if (!version?.startsWith('bench-')) return false;
        const prev = map.get(id);
        map.set(id, version);
        if (prev === undefined || prev === version) return false;
        out.push(at - Number(version.slice('bench-'.length)));
        return true;
      };
      // Three independent pollers, so a slow one (the full list) never stretches another's interval.
      const every = async (intervalMs: number, poll: () => Promise<void>): Promise<void> => {
        while (Date.now() - t0 < measureMs) {
          const started = Date.now();
          await poll();
          await sleep(Math.max(0, intervalMs - (Date.now() - started)));
        }
      };
      await Promise.all([
        // Each sampled agent through the API, every 250 ms.
        every(POLL_MS, async () => {
          await Promise.all(
            sample.map(async (id) => {
              const started = performance.now();
              const a = await api.request<{ version: string | null }>('GET', `/api/v1/agents/${id}`).catch(() => void getErrors++);
              getTimes.push(performance.now() - started);
              if (seen(apiSeen, lags, id, a?.version, Date.now())) changed.add(id);
            }),
          );
        }),
        // The same agents' rows in the store, every 250 ms.
        every(POLL_MS, async () => {
          const rows = await sql.all<{ agent_id: string; status: string }>(storeDb, `SELECT agent_id, status FROM agent_status WHERE agent_id IN (${placeholders})`, sample);
          const at = Date.now();
          for (const r of rows) seen(storeSeen, storeLags, r.agent_id, (JSON.parse(r.status) as { version?: string }).version, at);
        }),
        // The full list once a second (BENCH_FLEET_LIST_SECS): what a dashboard does.
        every(listEveryMs, async () => {
          if (listEveryMs === 0) return void (await sleep(measureMs));
          const s = performance.now();
          await api.request('GET', '/api/v1/agents').catch(() => undefined);
          listTimes.push(performance.now() - s);
        }),
      ]);
      const seconds = (Date.now() - t0) / 1000;
      const cpu1 = cpuSeconds(cpPid);
      const busy1 = systemBusySeconds();
      const errorsNow = errorTotals();
      const errors: Record<string, number> = {};
      for (const [code, count] of Object.entries(errorsNow)) if (count - (before.errors[code] ?? 0) > 0) errors[code] = count - (before.errors[code] ?? 0);
      const step: Omit<FleetStep, 'ok'> = {
        agents: n,
        connected: total('connected'),
        refused: total('refused'),
        connectSeconds,
        connectMs: percentiles(sims.flatMap((s) => s.connectMs)),
        reconnects: total('reconnects') - before.reconnects,
        drops: total('drops') - before.drops,
        errors,
        connectTimeouts: total('connectTimeouts') - before.timeouts,
        windowDrops: total('drops') - drops0,
        statusPerSec: (total('statusSent') - sent0) / seconds,
        pubacksPerSec: (total('pubacks') - acks0) / seconds,
        lagMs: percentiles(lags),
        storeLagMs: percentiles(storeLags),
        stale: sample.length - changed.size,
        listMs: percentiles(listTimes),
        getMs: percentiles(getTimes),
        getErrors,
        cpCpuPercent: cpu0 !== undefined && cpu1 !== undefined ? ((cpu1 - cpu0) / seconds) * 100 : NaN,
        cpRssMiB: (rssBytes(cpPid) ?? NaN) / 1048576,
        simCpuPercent: ((total('cpu_secs') - sim0) / seconds) * 100,
        machineCpuPercent: busy0 !== undefined && busy1 !== undefined ? ((busy1 - busy0) / seconds) * 100 : NaN,
      };
      const ok = step.connected >= n && step.refused === 0 && lags.length > 0 && step.lagMs.p99 < LAG_LIMIT_MS && step.stale === 0;
      results.push({ ...step, ok });
      options.log(
        `fleet: N=${n} lag p99 ${Math.round(step.lagMs.p99)} ms (store ${Math.round(step.storeLagMs.p99)} ms), ${Math.round(step.statusPerSec)} status/s, ` +
          `control plane ${Math.round(step.cpCpuPercent)}% CPU ${Math.round(step.cpRssMiB)} MiB, simulators ${Math.round(step.simCpuPercent)}%: ${ok ? 'ok' : 'over the limit'}`,
      );
      if (!ok) break;
    }
  } finally {
    for (const s of sims) if (s.child.connected) s.child.send({ type: 'stop' });
    await sql.close(storeDb).catch(() => {});
    await cp.stop('SIGTERM');
  }
  const largestOk = results.filter((r) => r.ok).reduce((m, r) => Math.max(m, r.agents), 0);
  const text = fleetReport(results, largestOk, { simCount, connectRate, measureSeconds: measureMs / 1000, mode: process.env.BENCH_FLEET_STEPS ? `steps ${steps.join(',')}` : full ? 'full step-up (BENCH_FLEET_FULL=1)' : 'quick default', load: [loadBefore, loadAverage()] });
  if (full && !process.env.BENCH_FLEET_STEPS) {
    const resultsDir = join(REPO_ROOT, 'test', 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(join(resultsDir, 'fleet.md'), `${RESULTS_HEADER}\n${text}`);
  }
  return { steps: results, largestOk, text };
}

const RESULTS_HEADER = `<!-- Written by the fleet scale benchmark (test/bench/fleet.ts) after a full step-up:
npm run build && BENCH_FLEET_FULL=1 node dist/test/bench/fleet-run.js (other modes only print). -->
`;

function fleetReport(steps: FleetStep[], largestOk: number, setup: { simCount: number; connectRate: number; measureSeconds: number; mode: string; load: [string, string] }): string {
  const f = (x: number): string => (Number.isFinite(x) ? String(Math.round(x)) : '–');
  const errs = (e: Record<string, number>): string => Object.entries(e).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
  const lines = [
    '## Fleet scale (MQTT status + telemetry at 1 s per agent, embedded broker)',
    '',
    `Largest fleet with status lag p99 < 5 s: **${largestOk}** agents (target ≥ 5,000: ${largestOk >= 5000 ? 'PASS' : 'FAIL'}).`,
    `Run: ${new Date().toISOString()}, ${setup.mode}, Node ${process.version}, load average ${setup.load[0]} before / ${setup.load[1]} after (other work on the machine competes for the same cores).`,
    `Setup: ${availableParallelism()} cores shared by the control plane and ${setup.simCount} simulator processes; agents connect at ${setup.connectRate}/s in total, ` +
      `each then publishes a QoS 1 retained status and QoS 0 telemetry every second; ${setup.measureSeconds} s measured per step after all are connected and 5 s of settling.`,
    'Lag = status sent_at → first seen in GET /api/v1/agents/{id} (API) or in the store (store, after the 250 ms flush), on sampled agents polled every 250 ms (so up to 250 ms of it is polling).',
    '',
    '| agents | connected | connect s | CONNACK p50/p99 ms | retries | drops | status/s | lag p50 ms | p95 | p99 | max | store lag p99 | stale | GET ms p50/p99 | list ms p50 | CP CPU % | CP RSS MiB | sims CPU % | machine CPU % | |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...steps.map(
      (s) =>
        `| ${s.agents} | ${s.connected} | ${Number.isFinite(s.connectSeconds) ? s.connectSeconds.toFixed(1) : '–'} | ${f(s.connectMs.p50)}/${f(s.connectMs.p99)} | ${s.reconnects} | ${s.drops} | ${f(s.statusPerSec)} | ` +
        `${f(s.lagMs.p50)} | ${f(s.lagMs.p95)} | ${f(s.lagMs.p99)} | ${f(s.lagMs.max)} | ${f(s.storeLagMs.p99)} | ${s.stale} | ${f(s.getMs.p50)}/${f(s.getMs.p99)} | ${f(s.listMs.p50)} | ${f(s.cpCpuPercent)} | ${f(s.cpRssMiB)} | ${f(s.simCpuPercent)} | ${f(s.machineCpuPercent)} | ${s.ok ? 'ok' : 'over'} |`,
    ),
    '',
    `Socket errors, CONNACK timeouts and drops per step: ${steps.map((s) => `N=${s.agents}: errors ${errs(s.errors)}, timeouts ${s.connectTimeouts}, drops in the measured window ${s.windowDrops}, failed GETs ${s.getErrors}`).join('; ') || '–'}.`,
    '',
  ];
  return lines.join('\n');
}
