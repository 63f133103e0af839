// Runs the built agent (dist/agent/main.js) as a child process for cross-process tests and the
// benchmark. Ports are 0 in config; the bound ones are read back from the agent's start-up log.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { onChildLines, parseJsonLine } from './child-lines.js';

/** The checkout's root: the nearest folder above this file holding package.json (works from dist/ too). */
export const REPO_ROOT = findRepoRoot(import.meta.dirname);

function findRepoRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}
export const AGENT_MAIN = join(REPO_ROOT, 'dist', 'agent', 'main.js');

export interface AgentProcessOptions {
  readonly dir: string;
  /** Extra keys merged over the default test config (one mllp source "test" on 127.0.0.1:0). */
  readonly config?: Record<string, unknown>;
  readonly sources?: readonly Record<string, unknown>[];
  /** Wrap the command (e.g. ['strace', '-f', ...]); the agent's argv is appended. */
  readonly wrapper?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningAgent {
  readonly child: ChildProcess;
  readonly mllpPorts: Record<string, number>;
  readonly adminPort: number;
  readonly configPath: string;
  /** Every stdout/stderr line so far (JSON log lines and anything else). */
  readonly lines: string[];
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function writeAgentConfig(options: AgentProcessOptions): string {
  mkdirSync(options.dir, { recursive: true });
  const config = {
    data_dir: join(options.dir, 'data'),
    log_level: 'info',
    admin: { listen: '127.0.0.1:0' },
    sources: options.sources ?? [{ id: 'test', type: 'mllp', listen: '127.0.0.1:0' }],
    ...options.config,
  };
  const path = join(options.dir, 'agent.yaml');
  writeFileSync(path, stringify(config));
  return path;
}

export async function startAgent(options: AgentProcessOptions, timeoutMs = 20_000): Promise<RunningAgent> {
  const configPath = writeAgentConfig(options);
  const args = [AGENT_MAIN, 'run', '--config', configPath];
  const [cmd, ...pre] = options.wrapper && options.wrapper.length > 0 ? [...options.wrapper, process.execPath] : [process.execPath];
  const child = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  const lines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const started = new Promise<{ mllpPorts: Record<string, number>; adminPort: number }>((res, rej) => {
    let adminPort = 0;
    const timer = setTimeout(() => rej(new Error(`agent did not start within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
    const onLine = (line: string): void => {
      lines.push(line);
      const entry = parseJsonLine(line);
      if (!entry) return;
      if (entry.msg === 'admin HTTP listening') adminPort = (entry.listen as { port: number }).port;
      if (entry.msg === 'agent started') {
        clearTimeout(timer);
        const mllpPorts: Record<string, number> = {};
        for (const s of entry.sources as { id: string; listen?: { port: number } }[]) if (s.listen) mllpPorts[s.id] = s.listen.port;
        res({ mllpPorts, adminPort });
      }
    };
    onChildLines(child, onLine);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`agent exited (code ${code}, signal ${signal}) before it started:\n${lines.join('\n')}`));
    });
  });
  const { mllpPorts, adminPort } = await started;
  return {
    child,
    mllpPorts,
    adminPort,
    configPath,
    lines,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `ferry-agent ARGS...` (the built CLI) to completion; never throws on a non-zero exit. */
export function runAgentCli(args: readonly string[], timeoutMs = 15_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ferry-agent ${args.join(' ')} did not finish within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
