// Wiring and lifecycle of one agent process: data directory, keys, buffer, sources, admin HTTP,
// uplink. Start order is buffer first (nothing is accepted before it can be stored), then sources,
// then the uplink; stop order is uplink first (nothing more is sent), then the reverse of the start.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AgentMetrics, createAdminApp, startAdminServer, type AdminServer, type Readiness } from './admin/index.js';
import { Keyring, MessageBuffer } from './buffer/index.js';
import { parseListen, type AgentConfig } from './config/index.js';
import { credentialsPath, readCredentials } from './enroll/index.js';
import { FerryError } from './errors.js';
import type { Logger } from './log.js';
import { createSource, type Source } from './sources/index.js';
import { Uplink, disabledUplinkStatus, type UplinkStatus } from './uplink/index.js';
import { VERSION } from './version.js';

export interface AgentPaths {
  readonly dataDir: string;
  readonly bufferFile: string;
  readonly keyFile: string;
}

export function agentPaths(config: AgentConfig): AgentPaths {
  return {
    dataDir: config.data_dir,
    bufferFile: join(config.data_dir, 'buffer.db'),
    keyFile: config.buffer.key_file ?? join(config.data_dir, 'buffer-keys.json'),
  };
}

const DEDUPE_PRUNE_INTERVAL_MS = 60_000;

/** The MLLP duplicate windows (file drops deduplicate by file hash instead). */
function dedupeWindows(config: AgentConfig): number[] {
  return config.sources.flatMap((s) => (s.type === 'mllp' ? [s.dedupe_window_secs] : []));
}
/** The longest a stopping uplink waits for Acks of batches in flight (they are resent otherwise). */
const UPLINK_STOP_WAIT_MS = 3000;

/** Why there is no uplink, for the status document. */
interface UplinkOff {
  readonly message: string;
  readonly lastError: UplinkStatus['last_error'];
}

export class Agent {
  private readonly startedAt = Date.now();
  private stopping = false;
  private pruneTimer: NodeJS.Timeout | undefined;
  private uplink: Uplink | undefined;
  private uplinkOff: UplinkOff = { message: 'not started', lastError: null };

  private constructor(
    readonly config: AgentConfig,
    readonly paths: AgentPaths,
    readonly buffer: MessageBuffer,
    readonly metrics: AgentMetrics,
    readonly sources: readonly Source[],
    private admin: AdminServer | undefined,
    private readonly log: Logger,
  ) {}

  static async start(config: AgentConfig, log: Logger): Promise<Agent> {
    const paths = agentPaths(config);
    mkdirSync(paths.dataDir, { recursive: true, mode: 0o700 });
    const keyring = Keyring.loadOrCreate(paths.keyFile);
    // Metrics read the buffer's stats and the buffer reports commits to metrics: tie the knot late.
    const ref: { buffer?: MessageBuffer; uplink?: Uplink } = {};
    const metrics = new AgentMetrics(() => ref.buffer?.stats());
    const buffer = await MessageBuffer.open({
      path: paths.bufferFile,
      keyring,
      maxBytes: config.buffer.max_bytes,
      maxDedupeWindowSecs: Math.max(1, ...dedupeWindows(config)),
      onCommit: (seconds, messages) => {
        metrics.commitSeconds.observe(seconds);
        metrics.commitMessages.observe(messages);
        ref.uplink?.wake();
      },
    });
    ref.buffer = buffer;
    const stats = buffer.stats();
    log.info({ component: 'buffer', buffer_id: stats.bufferId, depth: stats.depth, bytes: stats.bytes, last_seq: stats.lastSeq, key_id: keyring.activeKeyId }, 'buffer open');
    const sources = config.sources.map((s) => createSource(s, { buffer, log, metrics }));
    const agent = new Agent(config, paths, buffer, metrics, sources, undefined, log);
    try {
      for (const source of sources) await source.start();
      const adminListen = parseListen(config.admin.listen)!;
      const app = createAdminApp({ metrics, status: () => agent.status(), readiness: () => agent.readiness() });
      agent.admin = await startAdminServer(app, adminListen.host, adminListen.port);
      log.info({ component: 'admin', listen: agent.admin.address }, 'admin HTTP listening');
      agent.uplink = agent.makeUplink();
      ref.uplink = agent.uplink;
      await agent.uplink?.start();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    const window = Math.max(0, ...dedupeWindows(config));
    agent.pruneTimer = setInterval(() => {
      buffer.pruneDedupe(window * 1000).catch((err: unknown) => log.warn({ err }, 'pruning dedupe entries failed; will retry'));
    }, DEDUPE_PRUNE_INTERVAL_MS);
    agent.pruneTimer.unref();
    if (sources.length === 0) log.warn('no sources configured: the agent is running but receives nothing; add sources to the config file');
    log.info({ version: VERSION, sources: sources.map((s) => ({ id: s.config.id, type: s.config.type, ...s.describe() })) }, 'agent started');
    return agent;
  }

  /** The uplink when enrolled and enabled; otherwise records why not (status) and says how to fix it (log). */
  private makeUplink(): Uplink | undefined {
    const log = this.log.child({ component: 'uplink', id: 'grpc' });
    if (!this.config.uplink.enabled) {
      this.uplinkOff = { message: 'disabled in the config (uplink.enabled: false); messages stay in the buffer', lastError: null };
      log.warn(this.uplinkOff.message);
      return undefined;
    }
    let credentials;
    try {
      credentials = readCredentials(this.paths.dataDir);
    } catch (err) {
      const code = err instanceof FerryError ? err.code : 'credentials_invalid';
      this.uplinkOff = { message: `credentials unusable: ${(err as Error).message}`, lastError: { code, message: (err as Error).message, at: new Date().toISOString() } };
      log.error({ err: { code, message: (err as Error).message } }, 'uplink not started: the credentials file cannot be used; messages stay in the buffer');
      return undefined;
    }
    if (!credentials) {
      this.uplinkOff = {
        message: `not enrolled (no ${credentialsPath(this.paths.dataDir)}); run: ferry-agent enroll --control-plane URL --token-file FILE --data-dir ${this.paths.dataDir}`,
        lastError: null,
      };
      log.warn(`agent is not enrolled: messages stay in the buffer. To deliver them, run: ferry-agent enroll --control-plane URL --token-file FILE --data-dir ${this.paths.dataDir}, then restart the agent`);
      return undefined;
    }
    return new Uplink({ credentials, config: this.config.uplink, agentVersion: VERSION }, { buffer: this.buffer, log: this.log, metrics: this.metrics });
  }

  uplinkStatus(): UplinkStatus {
    return this.uplink?.status() ?? disabledUplinkStatus(this.buffer, this.uplinkOff.message, this.uplinkOff.lastError);
  }

  adminAddress(): { host: string; port: number } | undefined {
    return this.admin?.address;
  }

  /** Re-reads the key file (after `ferry-agent rotate-key`): new rows use the new active key. */
  reloadKeys(): void {
    const keyring = Keyring.load(this.paths.keyFile);
    this.buffer.useKeyring(keyring);
    this.log.info({ component: 'buffer', key_id: keyring.activeKeyId }, 'key file reloaded; new messages are sealed with the active key');
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.stopping) reasons.push('agent is shutting down');
    if (this.buffer.stats().full) reasons.push('buffer is full: new messages are refused until the uplink drains it');
    for (const s of this.sources) if (s.health().state !== 'running') reasons.push(`source ${s.config.id} is ${s.health().state}: ${s.health().message}`);
    // Store-and-forward: a disconnected uplink never makes the agent unready (sources keep
    // accepting into the buffer); it is reported so a supervisor can see it.
    const warnings: string[] = [];
    const up = this.uplink?.health();
    if (up && up.state !== 'connected') warnings.push(`uplink is ${up.state}: ${up.message}; messages are kept in the buffer`);
    return { ready: reasons.length === 0, reasons, warnings };
  }

  status(): object {
    const b = this.buffer.stats();
    const now = Date.now();
    return {
      version: VERSION,
      state: this.stopping ? 'stopping' : 'running',
      uptime_secs: Math.round((now - this.startedAt) / 1000),
      started_at: new Date(this.startedAt).toISOString(),
      ready: this.readiness(),
      buffer: {
        buffer_id: b.bufferId,
        depth: b.depth,
        bytes: b.bytes,
        max_bytes: b.maxBytes,
        used_ratio: b.maxBytes > 0 ? b.bytes / b.maxBytes : 0,
        full: b.full,
        oldest_pending_age_secs: b.oldestReceivedAt === null ? null : (now - b.oldestReceivedAt) / 1000,
        last_seq: b.lastSeq,
        commits: b.commits,
      },
      alerts: b.full ? ['buffer_full'] : [],
      uplink: this.uplinkStatus(),
      sources: this.sources.map((s) => ({
        id: s.config.id,
        type: s.config.type,
        ...s.describe(),
        health: s.health(),
        counters: s.counters(),
      })),
    };
  }

  /** Graceful stop: stop accepting, answer what was read, finish commits, close the database. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    const deadline = Date.now() + this.config.shutdown_timeout_secs * 1000;
    this.log.info('agent stopping: no new connections; answering frames already received');
    await this.uplink?.stop(Math.min(deadline, Date.now() + UPLINK_STOP_WAIT_MS));
    await Promise.all(this.sources.map((s) => s.stop(deadline)));
    await this.admin?.close();
    await this.buffer.close();
    this.log.info('agent stopped cleanly');
  }
}
