// Shared parts of the end-to-end tests (test/e2e-*.test.ts): a control plane and an agent enrolled
// through the real API, the agent's /status, an MLLP load generator that behaves like a real
// sender (resends what was not acknowledged, reconnects when the agent is gone), and the tally of
// sent / acknowledged / stored / lost / duplicated read back from the control plane's HTTP API.

import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MllpClient, readAck } from '../../agent/sources/mllp/client.js';
import { startAgent, writeAgentConfig, type AgentProcessOptions, type RunningAgent } from './agent-process.js';
import { adminToken, ControlPlaneApi, runEnroll, startControlPlane, type ControlPlaneProcess, type StoredMessageMeta } from './control-plane-process.js';
import { realisticMessage } from './messages.js';
import { sleep, waitFor } from './wait.js';

/** After each cross-process test: kill (SIGKILL) the agent, then the control plane, and remove the test's folder. */
export async function cleanUpProcesses(agent: RunningAgent | undefined, cp: ControlPlaneProcess | undefined, dir: string | undefined): Promise<void> {
  await agent?.stop('SIGKILL');
  await cp?.stop('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export { sleep, waitFor } from './wait.js';

export function sha256hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface AgentStatus {
  readonly buffer: { readonly depth: number };
  readonly uplink: {
    readonly state: string;
    readonly target: string | null;
    readonly pending: { readonly count: number; readonly bytes: number; readonly oldest_age_secs: number | null };
    readonly committed_seq: number | null;
    readonly last_error: { readonly code: string; readonly message: string } | null;
    readonly message: string;
  };
}

export async function agentStatus(adminPort: number): Promise<AgentStatus> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/status`);
  return (await res.json()) as AgentStatus;
}

/** Waits until the agent's uplink is connected with nothing pending (everything acknowledged by the control plane). */
export async function waitDrained(adminPort: number, timeoutMs: number): Promise<void> {
  let last: AgentStatus | undefined;
  try {
    await waitFor(
      async () => {
        last = await agentStatus(adminPort);
        return last.uplink.state === 'connected' && last.uplink.pending.count === 0 && last.buffer.depth === 0;
      },
      timeoutMs,
      'the agent uplink to drain',
      100,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.uplink)}`);
  }
}

/** Agent options with fast reconnects (tests restart control planes) merged under `config`. */
export function agentOptions(dir: string, sources: readonly Record<string, unknown>[], uplink: Record<string, unknown> = {}): AgentProcessOptions {
  return {
    dir,
    sources,
    config: { uplink: { retry_initial_delay_secs: 0.05, retry_max_delay_secs: 0.5, ...uplink } },
  };
}

export interface Fleet {
  readonly cp: ControlPlaneProcess;
  readonly api: ControlPlaneApi;
  readonly agentId: string;
  readonly agentOptions: AgentProcessOptions;
}

/**
 * Starts a control plane on DIR/cp, makes a one-use enrollment token with the admin token, and
 * enrolls an agent (config in DIR/agent) with `ferry-agent enroll`, the token on stdin.
 */
export async function startFleet(dir: string, options: AgentProcessOptions): Promise<Fleet> {
  const cp = await startControlPlane({ dataDir: join(dir, 'cp') });
  const api = new ControlPlaneApi(cp.url, adminToken(cp.dataDir));
  const { token } = await api.createEnrollmentToken({ max_uses: 1 });
  const configPath = writeAgentConfig(options);
  const res = await runEnroll(cp.url, token, configPath);
  if (res.code !== 0) throw new Error(`enroll failed (${res.code}): ${res.stderr}`);
  const credsPath = join(options.dir, 'data', 'credentials.json');
  if ((statSync(credsPath).mode & 0o777) !== 0o600) throw new Error('credentials.json is not 0600');
  const creds = JSON.parse(readFileSync(credsPath, 'utf8')) as { agent_id: string };
  return { cp, api, agentId: creds.agent_id, agentOptions: options };
}

/** The same agent again (same data dir) with each MLLP source on the port it had before. */
export function restartAgent(options: AgentProcessOptions, previous: Pick<RunningAgent, 'mllpPorts'>): Promise<RunningAgent> {
  const sources = (options.sources ?? []).map((s) => ({ ...s, listen: `127.0.0.1:${previous.mllpPorts[s.id as string]}` }));
  return startAgent({ ...options, sources });
}

export function mllpFrame(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x0b]), payload, Buffer.from([0x1c, 0x0d])]);
}

interface SentMessage {
  readonly controlId: string;
  readonly sha256: string;
  acked: boolean;
}

export interface LoadOptions {
  readonly port: () => number;
  readonly connections: number;
  readonly prefix: string;
  /** Stop taking new messages after this many (default: no limit, run until stop()). */
  readonly maxMessages?: number;
  /** Pause between a worker's messages (default 0: as fast as the ACKs come back). */
  readonly pauseMs?: number;
}

/**
 * C connections, each sending realistic messages one at a time (the next only after the previous
 * one's AA) like an interface engine: a message that got no AA (connection refused or closed, a
 * timeout, AR) is sent again, byte-identical, on a new connection until it is acknowledged.
 */
export class LoadSender {
  readonly messages = new Map<string, SentMessage>();
  /** Per connection, the control ids in the order they were acknowledged. */
  readonly ackOrder: string[][] = [];
  acked = 0;
  /** Attempts that got no AA (connection refused or closed, timeout, AR) and were made again. */
  retries = 0;
  /** Messages sent more than once (byte-identical) before their AA. */
  resent = 0;
  private next = 1;
  private stopping = false;
  private giveUp = false;
  private done: Promise<void> | undefined;

  constructor(private readonly options: LoadOptions) {}

  start(): void {
    this.done = Promise.all(Array.from({ length: this.options.connections }, (_, w) => this.worker(w))).then(() => undefined);
  }

  get sent(): number {
    return this.messages.size;
  }

  /** Takes no new messages; the ones in flight are retried until acknowledged (or the deadline passes). */
  async stop(deadlineMs = 20_000): Promise<void> {
    this.stopping = true;
    const timer = setTimeout(() => (this.giveUp = true), deadlineMs);
    await this.done;
    clearTimeout(timer);
  }

  /** With maxMessages: resolves when all of them are acknowledged (or the deadline passes). */
  async finish(deadlineMs = 20_000): Promise<void> {
    const timer = setTimeout(() => (this.giveUp = true), deadlineMs);
    await this.done;
    clearTimeout(timer);
  }

  /** Resolves once `count` more messages have been acknowledged. */
  async waitAcked(count: number, timeoutMs: number): Promise<void> {
    const target = this.acked + count;
    await waitFor(() => this.acked >= target, timeoutMs, `${count} more AAs`, 10);
  }

  private async worker(w: number): Promise<void> {
    const order: string[] = [];
    this.ackOrder[w] = order;
    let client: MllpClient | undefined;
    while (!this.stopping && (this.options.maxMessages === undefined || this.next <= this.options.maxMessages)) {
      const bytes = realisticMessage(this.options.prefix, this.next++);
      const controlId = readControlId(bytes);
      const record: SentMessage = { controlId, sha256: sha256hex(bytes), acked: false };
      this.messages.set(controlId, record);
      for (let attempt = 0; !record.acked && !this.giveUp; attempt++) {
        if (attempt > 0) {
          this.retries++;
          if (attempt === 1) this.resent++;
          await sleep(25);
        }
        try {
          client ??= await MllpClient.connect({ host: '127.0.0.1', port: this.options.port(), responseTimeoutMs: 10_000 });
          const ack = readAck(await client.send(bytes));
          if (ack.code === 'AA' && ack.controlId === controlId) {
            record.acked = true;
            this.acked++;
            order.push(controlId);
          }
        } catch {
          client?.raw.destroy();
          client = undefined;
        }
      }
      if (this.options.pauseMs) await sleep(this.options.pauseMs);
    }
    if (client) await client.close();
  }
}

function readControlId(message: Buffer): string {
  const msh = message.toString('latin1').split('\r')[0]!.split('|');
  return msh[9]!;
}

export interface Tally {
  readonly sent: number;
  readonly acknowledged: number;
  readonly stored: number;
  readonly lost: number;
  readonly duplicated: number;
  /** Stored rows whose sha256 differs from what was sent, or that nobody sent. */
  readonly corrupt: number;
  /** Pairs of messages acknowledged one after the other on one connection but stored with seq not increasing. */
  readonly outOfOrder: number;
}

/** Compares what the sender had acknowledged with every row the control plane lists for the agent. */
export function tally(sender: LoadSender, stored: readonly StoredMessageMeta[]): Tally {
  const byControlId = new Map<string, StoredMessageMeta[]>();
  for (const row of stored) {
    const rows = byControlId.get(row.control_id);
    if (rows) rows.push(row);
    else byControlId.set(row.control_id, [row]);
  }
  let lost = 0;
  let duplicated = 0;
  let corrupt = 0;
  let acknowledged = 0;
  for (const m of sender.messages.values()) {
    const rows = byControlId.get(m.controlId) ?? [];
    if (m.acked) acknowledged++;
    if (m.acked && rows.length === 0) lost++;
    if (rows.length > 1) duplicated += rows.length - 1;
    corrupt += rows.filter((r) => r.sha256.toLowerCase() !== m.sha256).length;
  }
  for (const [controlId, rows] of byControlId) if (!sender.messages.has(controlId)) corrupt += rows.length;
  let outOfOrder = 0;
  for (const order of sender.ackOrder) {
    let prev = -Infinity;
    for (const id of order) {
      const seq = byControlId.get(id)?.[0]?.seq;
      if (seq === undefined) continue;
      if (seq <= prev) outOfOrder++;
      prev = seq;
    }
  }
  return { sent: sender.sent, acknowledged, stored: stored.length, lost, duplicated, corrupt, outOfOrder };
}

export function formatTally(name: string, t: Tally, extra: Record<string, number | string> = {}): string {
  const more = Object.entries(extra)
    .map(([k, v]) => ` ${k}=${v}`)
    .join('');
  return `[${name}] sent=${t.sent} acknowledged=${t.acknowledged} stored=${t.stored} lost=${t.lost} duplicated=${t.duplicated} corrupt=${t.corrupt} out_of_order=${t.outOfOrder}${more}`;
}

export { startControlPlane, type ControlPlaneProcess };
