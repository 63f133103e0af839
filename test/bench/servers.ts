// The three servers under test, each in its own child process so the load generator never shares
// an event loop with the server it measures: the ceiling (ceiling-server.ts), node-hl7-server 2.4.0
// (hl7-server-peer.ts) and Ferry's agent (dist/agent/main.js via test/helpers/agent-process.ts).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type RunningAgent } from '../helpers/agent-process.js';
import { onChildLines, parseJsonLine } from '../helpers/child-lines.js';

export type ServerKind = 'ceiling' | 'hl7' | 'ferry';

export const SERVER_LABEL: Record<ServerKind, string> = {
  ceiling: 'ceiling',
  hl7: 'node-hl7-server 2.4.0',
  ferry: 'Ferry',
};

export interface BenchServer {
  readonly kind: ServerKind;
  readonly port: number;
  readonly pid: number;
  /** Lines the process wrote (stdout and stderr). */
  readonly lines: string[];
  stop(): Promise<void>;
}

/** Every child the benchmark started, so none outlives it whatever happens. */
const children = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}

/** Registers a child so killAllChildren() ends it whatever happens. */
export function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL if the process has not exited within timeoutMs. */
export async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  const done = exited(child);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
  });
  await Promise.race([done, killed]);
  clearTimeout(timer);
  await done;
}

/** Starts a bench peer script (compiled JS beside this file) and waits for its {"port": N} line. */
export async function startPeer(kind: 'ceiling' | 'hl7', timeoutMs = 15_000): Promise<BenchServer> {
  const script = join(import.meta.dirname, kind === 'ceiling' ? 'ceiling-server.js' : 'hl7-server-peer.js');
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORT: '0' } });
  track(child);
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} server did not start within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
    onChildLines(child, (line) => {
      lines.push(line);
      const port = parseJsonLine(line)?.port;
      if (typeof port === 'number' && port > 0) {
        clearTimeout(timer);
        resolve(port);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${kind} server exited (code ${code}, signal ${signal}) before listening:\n${lines.join('\n')}`));
    });
  });
  return {
    kind,
    port,
    pid: child.pid!,
    lines,
    async stop() {
      await stopChild(child, 5000);
      // Let the last stderr line (node-hl7-server's counters) arrive.
      await new Promise((r) => setImmediate(r));
    },
  };
}

export interface FerryServer extends BenchServer {
  readonly agent: RunningAgent;
  readonly adminPort: number;
  readonly dir: string;
}

/**
 * Starts Ferry's agent with a fresh data directory under baseDir: one mllp source, admin on
 * 127.0.0.1:0, default buffer (WAL, synchronous=FULL, encryption: always on).
 *
 * log_level is 'info', not 'warn': test/helpers/agent-process.ts learns the bound ports from the
 * info-level 'admin HTTP listening' / 'agent started' lines, so at 'warn' it never sees them. At
 * 'info' the agent logs nothing per message (per-frame lines are debug), which the run checks by
 * counting the log lines written under load.
 */
export async function startFerry(baseDir: string, options: { cpuProfileDir?: string; profileName?: string } = {}): Promise<FerryServer> {
  const dir = mkdtempSync(join(baseDir, 'agent-'));
  // --cpu-prof is refused in NODE_OPTIONS, so it goes on node's command line through a shell that
  // execs node (same pid, so /proc readings still describe the agent).
  const wrapper = options.cpuProfileDir
    ? ['/bin/sh', '-c', `exec "$0" --cpu-prof --cpu-prof-dir="${options.cpuProfileDir}" --cpu-prof-name="${options.profileName ?? 'agent.cpuprofile'}" "$@"`]
    : undefined;
  const agent = await startAgent({
    dir,
    sources: [{ id: 'bench', type: 'mllp', listen: '127.0.0.1:0' }],
    config: { log_level: 'info' },
    ...(wrapper ? { wrapper } : {}),
  });
  track(agent.child);
  const port = agent.mllpPorts.bench;
  if (!port) {
    await agent.stop('SIGKILL');
    throw new Error(`agent started without the bench source:\n${agent.lines.join('\n')}`);
  }
  return {
    kind: 'ferry',
    port,
    pid: agent.child.pid!,
    lines: agent.lines,
    agent,
    adminPort: agent.adminPort,
    dir,
    async stop() {
      await stopChild(agent.child, 20_000);
    },
  };
}

/** Prometheus text from the agent's admin endpoint. */
export async function fetchMetrics(adminPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

/** The _sum and _count of a histogram (no labels) in Prometheus text. */
export function histogramTotals(text: string, name: string): { sum: number; count: number } {
  const sum = new RegExp(`^${name}_sum(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  const count = new RegExp(`^${name}_count(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return { sum: sum ? Number(sum[1]) : 0, count: count ? Number(count[1]) : 0 };
}

/** The cumulative buckets of a histogram: le -> count. */
export function histogramBuckets(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out.set(m[1]!, Number(m[2]));
  return out;
}

export function tempBase(): string {
  return mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'ferry-bench-'));
}

/**
 * A process that keeps `share` of one core busy (busy for share × 2 ms of every 2 ms, sleeping the
 * rest): stands in for a control plane on the same cores when the agent runs alone, so the bench
 * can tell what co-location costs ingest from what the uplink does.
 */
export function startCpuLoad(share: number): { readonly pid: number; stop(): Promise<void> } {
  const busyMs = Math.max(0, Math.min(1, share)) * 2;
  const script = `const busy=${busyMs};const tick=()=>{const end=performance.now()+busy;while(performance.now()<end);setTimeout(tick,Math.max(0,2-busy));};tick();`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  track(child);
  return { pid: child.pid!, stop: () => stopChild(child, 2000) };
}
