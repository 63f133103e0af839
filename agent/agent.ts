// Wiring and lifecycle of one agent process: data directory, keys, buffer, sources, admin HTTP,
// uplink, fleet client. Start order is buffer first (nothing is accepted before it can be stored),
// then sources, then the uplink and the fleet client; stop order is fleet (offline status) and
// uplink first, then the reverse of the start. A fleet policy (or `reload`) is applied live by
// applyLive(): only what changed is touched (sources via SourceSet, buffer size, uplink, log level).

import { mkdirSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { ConfigProblem } from '../proto/policy/index.js';
import { AgentMetrics, createAdminApp, startAdminServer, type AdminServer, type Readiness } from './admin/index.js';
import { Keyring, MessageBuffer } from './buffer/index.js';
import { parseListen, type AgentConfig } from './config/index.js';
import { credentialsPath, readCredentials } from './enroll/index.js';
import { FerryError } from './errors.js';
import { CommandLedger, CommandRunner, FleetClient, PolicyApplier, fleetStatusBody, keysNeedingRestart, telemetryCounters, type AgentSnapshot } from './fleet/index.js';
import type { Logger } from './log.js';
import { SourceSet, createSource, type Source } from './sources/index.js';
import { Uplink, disabledUplinkStatus, type UplinkStatus } from './uplink/index.js';
import { agentPaths, type AgentPaths } from './paths.js';
import { VERSION } from './version.js';

export { agentPaths, type AgentPaths };

export interface AgentOptions {
  /** Reads the local config file again (fleet `reload`); without it, reload re-applies the start config. */
  readonly loadLocalConfig?: () => AgentConfig;
  /**
   * Fleet `restart`: the caller stops this agent and starts a new one in the same process (main.ts),
   * which works alike under systemd and `npm start`. Without it, restart is refused.
   */
  readonly requestRestart?: () => void;
}

const DEDUPE_PRUNE_INTERVAL_MS = 60_000;

/** The MLLP duplicate windows (file drops deduplicate by file hash instead). */
function dedupeWindows(config: AgentConfig): number[] {
  return config.sources.flatMap((s) => (s.type === 'mllp' ? [s.dedupe_window_secs] : []));
}
/** The longest a stopping uplink waits for Acks of batches in flight (they are resent otherwise). */
const UPLINK_STOP_WAIT_MS = 3000;

/** Why there is no uplink (or fleet client), for the status document. */
interface Off {
  readonly message: string;
  readonly lastError: UplinkStatus['last_error'];
}

export class Agent {
  private readonly startedAt = Date.now();
  private stopping = false;
  private pruneTimer: NodeJS.Timeout | undefined;
  private uplink: Uplink | undefined;
  private uplinkOff: Off = { message: 'not started', lastError: null };
  private fleet: FleetClient | undefined;
  private fleetOff: Off = { message: 'not started', lastError: null };
  private admin: AdminServer | undefined;
  /** Live applies (policies, reloads) run one at a time. */
  private applyChain: Promise<unknown> = Promise.resolve();
  private current: AgentConfig;

  private constructor(
    private localConfig: AgentConfig,
    startConfig: AgentConfig,
    readonly paths: AgentPaths,
    readonly buffer: MessageBuffer,
    readonly metrics: AgentMetrics,
    private readonly sourceSet: SourceSet,
    readonly policy: PolicyApplier,
    private readonly log: Logger,
    private readonly options: AgentOptions,
  ) {
    this.current = startConfig;
  }

  /** The configuration in force: the local file, the applied policy over it, sources as they run. */
  get config(): AgentConfig {
    return this.current;
  }

  get sources(): readonly Source[] {
    return this.sourceSet.list();
  }

  static async start(localConfig: AgentConfig, log: Logger, options: AgentOptions = {}): Promise<Agent> {
    const paths = agentPaths(localConfig);
    mkdirSync(paths.dataDir, { recursive: true, mode: 0o700 });
    // The applier's apply callback needs the agent, which needs the applier: tie the knot late.
    const ref: { agent?: Agent; buffer?: MessageBuffer; uplink?: Uplink } = {};
    const policy = new PolicyApplier(localConfig, {
      dataDir: paths.dataDir,
      log,
      apply: (config) => ref.agent!.applyLive(config),
      sourcesInForce: () => ref.agent!.sourceSet.configs(),
    });
    const { config, cache } = policy.startConfig();
    log.level = config.log_level;
    const keyring = Keyring.loadOrCreate(paths.keyFile);
    // Metrics read the buffer's stats and the buffer reports commits to metrics.
    const metrics = new AgentMetrics(() => ref.buffer?.stats());
    const buffer = await MessageBuffer.open({
      path: paths.bufferFile,
      keyring,
      maxBytes: config.buffer.max_bytes,
      maxDedupeWindowSecs: Math.max(1, ...dedupeWindows(config)),
      onCommit: (seconds, messages) => {
        metrics.commitSeconds.observe(seconds);
        metrics.commitMessages.observe(messages);
        ref.agent?.uplink?.wake();
      },
    });
    ref.buffer = buffer;
    const stats = buffer.stats();
    log.info({ component: 'buffer', buffer_id: stats.bufferId, depth: stats.depth, bytes: stats.bytes, last_seq: stats.lastSeq, key_id: keyring.activeKeyId }, 'buffer open');
    const sourceSet = new SourceSet({ deps: { buffer, log, metrics }, create: createSource, stopTimeoutMs: config.shutdown_timeout_secs * 1000 });
    const agent = new Agent(localConfig, config, paths, buffer, metrics, sourceSet, policy, log, options);
    ref.agent = agent;
    try {
      const report = await sourceSet.apply(config.sources);
      const first = report.failed[0];
      // From the local file a source that cannot start stops the agent (the operator is there to
      // fix it); from a cached policy the others run and the failure is reported to the fleet.
      if (first && !cache) throw new FerryError(first.code === 'listen_failed' ? 'listen_failed' : 'source_failed', first.message);
      policy.noteStartProblems(report.failed.map((f) => ({ path: f.path, message: `source ${f.id}: ${f.message}` })));
      agent.current = { ...config, sources: sourceSet.configs() };
      const adminListen = parseListen(localConfig.admin.listen)!;
      const app = createAdminApp({ metrics, status: () => agent.status(), readiness: () => agent.readiness() });
      agent.admin = await startAdminServer(app, adminListen.host, adminListen.port);
      log.info({ component: 'admin', listen: agent.admin.address }, 'admin HTTP listening');
      agent.uplink = agent.makeUplink();
      await agent.uplink?.start();
      agent.fleet = agent.makeFleet();
      agent.fleet?.start();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    agent.pruneTimer = setInterval(() => {
      const window = Math.max(0, ...dedupeWindows(agent.current));
      buffer.pruneDedupe(window * 1000).catch((err: unknown) => log.warn({ err }, 'pruning dedupe entries failed; will retry'));
    }, DEDUPE_PRUNE_INTERVAL_MS);
    agent.pruneTimer.unref();
    const sources = sourceSet.list();
    if (sources.length === 0) log.warn('no sources configured: the agent is running but receives nothing; add sources to the config file');
    log.info({ version: VERSION, sources: sources.map((s) => ({ id: s.config.id, type: s.config.type, ...s.describe() })) }, 'agent started');
    return agent;
  }

  /**
   * Moves the running agent to `next` (the local file with a policy over it), touching only what
   * changed. Answers the problems: parts that kept their last good config. Never throws.
   */
  applyLive(next: AgentConfig): Promise<ConfigProblem[]> {
    const run = async (): Promise<ConfigProblem[]> => {
      if (this.stopping) return [{ path: '(root)', message: 'the agent is shutting down' }];
      const prev = this.current;
      const problems: ConfigProblem[] = [];
      const report = await this.sourceSet.apply(next.sources);
      for (const f of report.failed) problems.push({ path: f.path, message: `${f.message.startsWith(`source ${f.id} `) ? '' : `source ${f.id}: `}${f.message}${f.kept === 'last_good' ? ' (kept its last good config)' : ''}` });
      if (next.buffer.max_bytes !== prev.buffer.max_bytes) {
        this.buffer.setMaxBytes(next.buffer.max_bytes);
        this.log.info({ component: 'buffer', max_bytes: next.buffer.max_bytes }, 'buffer capacity changed');
      }
      if (next.log_level !== prev.log_level) {
        this.log.level = next.log_level;
        this.log.info({ level: next.log_level }, 'log level changed');
      }
      let uplinkConfig = next.uplink;
      if (!isDeepStrictEqual(next.uplink, prev.uplink)) {
        const problem = await this.replaceUplink(next, prev);
        if (problem) {
          problems.push(problem);
          uplinkConfig = prev.uplink;
        }
      }
      this.current = { ...next, uplink: uplinkConfig, sources: this.sourceSet.configs() };
      this.fleet?.notifyChange();
      return problems;
    };
    const result = this.applyChain.then(run, run);
    this.applyChain = result.catch(() => undefined);
    return result;
  }

  /** Uplink settings changed: stop the stream (rows are deleted only after an Ack, so nothing is lost) and start a new one. */
  private async replaceUplink(next: AgentConfig, prev: AgentConfig): Promise<ConfigProblem | undefined> {
    await this.uplink?.stop(Date.now() + UPLINK_STOP_WAIT_MS);
    this.current = { ...this.current, uplink: next.uplink };
    this.uplink = this.makeUplink();
    try {
      await this.uplink?.start();
      this.log.info({ component: 'uplink' }, 'uplink restarted with new settings');
      return undefined;
    } catch (err) {
      // Back to the settings that worked.
      this.current = { ...this.current, uplink: prev.uplink };
      this.uplink = this.makeUplink();
      await this.uplink?.start().catch(() => undefined);
      return { path: 'uplink', message: `uplink settings not applied: ${(err as Error).message} (kept the previous settings)` };
    }
  }

  /** The uplink when enrolled and enabled; otherwise records why not (status) and says how to fix it (log). */
  private makeUplink(): Uplink | undefined {
    const log = this.log.child({ component: 'uplink', id: 'grpc' });
    if (!this.current.uplink.enabled) {
      this.uplinkOff = { message: 'disabled in the config (uplink.enabled: false); messages stay in the buffer', lastError: null };
      log.warn(this.uplinkOff.message);
      return undefined;
    }
    const credentials = this.credentials(log, (off) => (this.uplinkOff = off), 'messages stay in the buffer');
    if (!credentials) return undefined;
    return new Uplink({ credentials, config: this.current.uplink, agentVersion: VERSION }, { buffer: this.buffer, log: this.log, metrics: this.metrics });
  }

  /** The fleet client when enrolled with a broker and enabled; otherwise records why not. */
  private makeFleet(): FleetClient | undefined {
    const log = this.log.child({ component: 'fleet', id: 'mqtt' });
    if (!this.localConfig.fleet.enabled) {
      this.fleetOff = { message: 'disabled in the config (fleet.enabled: false)', lastError: null };
      log.info(this.fleetOff.message);
      return undefined;
    }
    const credentials = this.credentials(log, (off) => (this.fleetOff = off), 'the agent runs its local config and cached policy');
    if (!credentials) return undefined;
    if (!credentials.mqtt_url) {
      this.fleetOff = {
        message: `the credentials name no fleet broker (mqtt_url): enrolled with a control plane that announced none; enroll again (ferry-agent enroll --force) once it runs one`,
        lastError: null,
      };
      log.warn(this.fleetOff.message);
      return undefined;
    }
    const runner = new CommandRunner(new CommandLedger(this.paths.dataDir), this.commandHandlers(), this.log);
    return new FleetClient({
      agentId: credentials.agent_id,
      secret: credentials.secret,
      url: credentials.mqtt_url,
      config: this.localConfig.fleet,
      log: this.log,
      handlers: {
        status: () => fleetStatusBody(this.snapshot()),
        telemetry: () => telemetryCounters(this.snapshot()),
        policy: (raw) => this.policy.receive(raw),
        command: (raw) => runner.handle(raw),
      },
    });
  }

  private credentials(log: Logger, setOff: (off: Off) => void, meanwhile: string): ReturnType<typeof readCredentials> {
    try {
      const credentials = readCredentials(this.paths.dataDir);
      if (!credentials) {
        setOff({ message: `not enrolled (no ${credentialsPath(this.paths.dataDir)}); run: ferry-agent enroll --control-plane URL --token-file FILE --data-dir ${this.paths.dataDir}`, lastError: null });
        log.warn(`agent is not enrolled: ${meanwhile}. Run: ferry-agent enroll --control-plane URL --token-file FILE --data-dir ${this.paths.dataDir}, then restart the agent`);
      }
      return credentials;
    } catch (err) {
      const code = err instanceof FerryError ? err.code : 'credentials_invalid';
      setOff({ message: `credentials unusable: ${(err as Error).message}`, lastError: { code, message: (err as Error).message, at: new Date().toISOString() } });
      log.error({ err: { code, message: (err as Error).message } }, `the credentials file cannot be used; ${meanwhile}`);
      return undefined;
    }
  }

  private commandHandlers(): ConstructorParameters<typeof CommandRunner>[1] {
    return {
      ping: () => ({ pong_at: new Date().toISOString(), version: VERSION }),
      flush: () => {
        this.uplink?.flush();
        return { pending: this.buffer.stats().depth, uplink: this.uplinkStatus().state };
      },
      setLogLevel: (level) => {
        const previous = this.log.level;
        this.log.level = level;
        this.log.info({ level, previous }, 'log level set by fleet command (until restart or the next policy)');
        return { level, previous };
      },
      reload: async () => {
        let local = this.localConfig;
        if (this.options.loadLocalConfig) local = this.options.loadLocalConfig();
        const restartNeeded = keysNeedingRestart(this.localConfig, local);
        // Keys that apply only at start stay as they are until a restart.
        this.localConfig = { ...this.localConfig, sources: local.sources, buffer: { ...this.localConfig.buffer, max_bytes: local.buffer.max_bytes }, uplink: local.uplink, log_level: local.log_level };
        const state = await this.policy.reload(this.localConfig);
        return { policy: state, sources: this.sourceSet.list().map((s) => s.config.id), restart_required_for: restartNeeded };
      },
      restart: () => {
        const request = this.options.requestRestart;
        if (!request) throw new Error('this agent was started without a restart handler (embedded use); restart it from its host program');
        return { result: { restarting: true, uptime_secs: Math.round((Date.now() - this.startedAt) / 1000) }, after: request };
      },
    };
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
    for (const f of this.sourceSet.errors()) warnings.push(`source ${f.id}: ${f.message}${f.kept === 'last_good' ? ' (running its last good config)' : ' (not running)'}`);
    return { ready: reasons.length === 0, reasons, warnings };
  }

  /** Fleet state for the admin status: connection, broker (no credentials), applied policy, apply errors. */
  fleetState(): object {
    const policy = this.policy.state();
    if (!this.fleet) return { state: 'disabled', message: this.fleetOff.message, last_error: this.fleetOff.lastError, policy };
    return { ...this.fleet.status(), policy };
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
      fleet: this.fleetState(),
      sources: this.sources.map((s) => ({
        id: s.config.id,
        type: s.config.type,
        ...s.describe(),
        health: s.health(),
        counters: s.counters(),
      })),
      source_errors: this.sourceSet.errors(),
    };
  }

  /** What the fleet status and telemetry are built from (agent/fleet/status.ts). */
  private snapshot(): AgentSnapshot {
    return {
      version: VERSION,
      startedAt: this.startedAt,
      now: Date.now(),
      buffer: this.buffer.stats(),
      uplink: this.uplinkStatus(),
      sources: this.sources,
      sourceErrors: this.sourceSet.errors(),
      policy: this.policy.state(),
    };
  }

  /** Graceful stop: offline status to the fleet, stop accepting, answer what was read, finish commits, close the database. */
  async stop(reason: 'shutdown' | 'restart' = 'shutdown'): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    const deadline = Date.now() + this.current.shutdown_timeout_secs * 1000;
    this.log.info('agent stopping: no new connections; answering frames already received');
    await this.fleet?.stop(reason);
    await this.applyChain;
    await this.uplink?.stop(Math.min(deadline, Date.now() + UPLINK_STOP_WAIT_MS));
    await this.sourceSet.stopAll(deadline);
    await this.admin?.close();
    await this.buffer.close();
    this.log.info('agent stopped cleanly');
  }
}
