// Runs the built control plane (dist/control-plane/main.js serve) as a child process for end-to-end
// tests: ports read back from its "control plane started" line, the admin token from its data dir,
// and small clients for the HTTP API (enrollment tokens, the message list with cursor paging,
// payloads) and for `ferry-agent enroll` (the token on stdin, as an operator would pipe it).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_MAIN, REPO_ROOT } from './agent-process.js';
import { onChildLines, parseJsonLine } from './child-lines.js';

export const CONTROL_PLANE_MAIN = join(REPO_ROOT, 'dist', 'control-plane', 'main.js');

export interface ControlPlaneOptions {
  readonly dataDir: string;
  /** 0 (default): any free port. */
  readonly httpPort?: number;
  /** 0 (default): any free port. Pass the previous port to restart "the same" control plane. */
  readonly grpcPort?: number;
  /** Embedded MQTT broker port; 0 (default): any free port (this machine's 1883 is Mosquitto's). */
  readonly mqttPort?: number;
  /** A config file (the flags above still override its ports and data dir). */
  readonly configFile?: string;
}

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly dataDir: string;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly mqttPort: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** Every stdout/stderr line so far. */
  readonly lines: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (graceful) or SIGKILL (crash); resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startControlPlane(options: ControlPlaneOptions, timeoutMs = 20_000): Promise<ControlPlaneProcess> {
  const args = [CONTROL_PLANE_MAIN, 'serve', '--data-dir', options.dataDir, '--http-port', String(options.httpPort ?? 0), '--grpc-port', String(options.grpcPort ?? 0), '--mqtt-port', String(options.mqttPort ?? 0), ...(options.configFile ? ['--config', options.configFile] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const ports = await new Promise<{ http: number; grpc: number; mqtt: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane did not start within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
    onChildLines(child, (line) => {
      lines.push(line);
      const rec = parseJsonLine(line) as { msg?: string; http?: { port: number }; grpc?: { port: number }; mqtt?: { port?: number } } | undefined;
      if (rec?.msg === 'control plane started' && rec.http && rec.grpc) {
        clearTimeout(timer);
        resolve({ http: rec.http.port, grpc: rec.grpc.port, mqtt: rec.mqtt?.port ?? 0 });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited (code ${code}, signal ${signal}) before it started:\n${lines.join('\n')}`));
    });
  });
  return {
    child,
    dataDir: options.dataDir,
    httpPort: ports.http,
    grpcPort: ports.grpc,
    mqttPort: ports.mqtt,
    url: `http://127.0.0.1:${ports.http}`,
    lines,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The admin API token the first start wrote to DATA_DIR/admin-token. */
export function adminToken(dataDir: string): string {
  return readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`HTTP ${status}: ${body}`);
  }
}

/** A small client for the control plane's JSON API with one bearer token. */
export class ControlPlaneApi {
  constructor(
    public baseUrl: string,
    private readonly token: string,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    if (!res.ok) throw new ApiError(res.status, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  createEnrollmentToken(body: { policy_id?: string; expires_in_secs?: number; max_uses?: number } = {}): Promise<{ token: string; id: string }> {
    return this.request('POST', '/api/v1/enrollment-tokens', body);
  }

  async revokeEnrollmentToken(id: string): Promise<void> {
    await this.request('DELETE', `/api/v1/enrollment-tokens/${encodeURIComponent(id)}`);
  }

  async revokeAgent(id: string): Promise<void> {
    await this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/revoke`);
  }

  /** Every message's metadata (all pages, following next_cursor), optionally for one agent. */
  async listMessages(filter: { agent?: string; source?: string } = {}): Promise<StoredMessageMeta[]> {
    const items: StoredMessageMeta[] = [];
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (filter.agent) q.set('agent', filter.agent);
      if (filter.source) q.set('source', filter.source);
      if (cursor) q.set('cursor', cursor);
      const page: { items: StoredMessageMeta[]; next_cursor: string | null } = await this.request('GET', `/api/v1/messages?${q.toString()}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  async payload(id: string): Promise<Buffer> {
    const res = await fetch(`${this.baseUrl}/api/v1/messages/${encodeURIComponent(id)}/payload`, { headers: { authorization: `Bearer ${this.token}` } });
    if (!res.ok) throw new ApiError(res.status, await res.text());
    return Buffer.from(await res.arrayBuffer());
  }
}

export interface StoredMessageMeta {
  readonly id: string;
  readonly agent_id: string;
  readonly source_id: string;
  readonly seq: number;
  readonly control_id: string;
  readonly message_type: string;
  readonly received_at: string;
  readonly size: number;
  readonly sha256: string;
}

/** `ferry-agent enroll --control-plane URL --token-file - --config FILE` with the token on stdin. */
export function runEnroll(controlPlaneUrl: string, token: string, configPath: string, name = 'e2e', extraArgs: readonly string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [AGENT_MAIN, 'enroll', '--control-plane', controlPlaneUrl, '--token-file', '-', '--config', configPath, '--name', name, ...extraArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(`${token}\n`);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}
