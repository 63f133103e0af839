// The fleet service: what the control plane does with the MQTT fleet bus, whichever broker carries
// it. It publishes each agent's policy (retained), keeps every agent's latest status, presence and
// health, keeps telemetry counters, and issues commands and records their results.
//
// Scale: thousands of agents each publish a status and telemetry every second or so. A status only
// updates memory (which serves every read); changed agents are written to the store together, one
// transaction every flush interval, so the store sees one write per agent per interval at most.

import { validatePolicy } from '../../proto/policy/index.js';
import type { CommandMessage, CommandResultMessage, PolicyMessage, StatusMessage, TelemetryMessage } from '../../proto/fleet/index.js';
import { statusMessageSchema } from '../../proto/fleet/index.js';
import { ControlPlaneError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AgentRecord, AgentStatusRecord, CommandRecord, CommandStatus, MessageStore } from '../store/index.js';
import type { FleetBus, FleetBusEvents } from './bus.js';
import { DEFAULT_HEALTH_OPTIONS, applyStatus, derivePresence, isLate, type AgentEntry, type AgentHealth, type HealthOptions } from './health.js';

export interface FleetServiceOptions {
  /** ms since the epoch; injectable for tests. */
  readonly now?: () => number;
  /** How often changed statuses are written to the store (default 250 ms). */
  readonly flushIntervalMs?: number;
  /** How often late heartbeats and expired commands are looked for (default 1 s). */
  readonly sweepIntervalMs?: number;
  /** Backlog samples: at most one per this many ms (default 5 s), this many kept (default 5). */
  readonly backlogSampleGapMs?: number;
  readonly backlogSamplesKept?: number;
  /** Policy publishes in flight at once when many agents need one (default 64). */
  readonly publishConcurrency?: number;
  readonly health?: Partial<HealthOptions>;
}

/** One agent as the fleet sees it (the API's view). */
export interface AgentFleetState {
  readonly online: boolean;
  readonly health: AgentHealth;
  readonly healthReasons: readonly string[];
  /** The latest status, or null when none has arrived. */
  readonly status: StatusMessage | null;
  readonly statusAt: number | null;
  readonly telemetry: { readonly counters: Readonly<Record<string, number>>; readonly at: number } | null;
}

export interface PolicyRollout {
  readonly policy_id: string;
  readonly latest_version: number;
  readonly agents_total: number;
  readonly applied_latest: number;
  readonly behind: { agent_id: string; applied_version: number | null; online: boolean }[];
  readonly failed: { agent_id: string; version: number | null; applied_version: number | null; state: string; errors: { path: string; message: string }[] }[];
  readonly offline: { agent_id: string; applied_version: number | null }[];
}

export interface FleetGauges {
  readonly agents: { readonly online: number; readonly offline: number };
  readonly health: Record<AgentHealth, number>;
  readonly commands: Record<CommandStatus, number>;
}

/** What the HTTP API uses; FleetService implements it. */
export interface FleetControl {
  agentState(agentId: string): AgentFleetState;
  /** Publishes the latest version of the policy to every agent on it. */
  policyChanged(policyId: string): Promise<void>;
  /** Publishes the agent's (new) policy to it: after enrollment and after PUT /agents/{id}. */
  agentPolicyChanged(agentId: string): Promise<void>;
  issueCommand(input: { agentId: string; type: CommandMessage['type']; args: Record<string, unknown>; expiresInSecs: number; issuedBy: string }): Promise<CommandRecord>;
  rollout(policyId: string): Promise<PolicyRollout | undefined>;
  gauges(): Promise<FleetGauges>;
}

export class FleetService implements FleetControl {
  private readonly entries = new Map<string, AgentEntry>();
  private readonly telemetry = new Map<string, { counters: Record<string, number>; at: number }>();
  private readonly dirty = new Set<string>();
  private readonly now: () => number;
  private readonly health: HealthOptions;
  private readonly log: Logger;
  private flushTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private sweeping = false;
  private publishTail: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly store: MessageStore,
    private readonly bus: FleetBus,
    log: Logger,
    private readonly options: FleetServiceOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.health = { ...DEFAULT_HEALTH_OPTIONS, ...options.health };
    this.log = log.child({ component: 'fleet', id: 'service' });
  }

  /** Loads the stored statuses, starts the bus, republishes every agent's policy (the embedded broker keeps retained messages in memory only). */
  async start(): Promise<void> {
    for (const r of await this.store.listAgentStatuses()) {
      const parsed = statusMessageSchema.safeParse(r.status);
      if (!parsed.success) continue;
      this.entries.set(r.agentId, { status: parsed.data, receivedAt: r.receivedAt, online: r.online, samples: [...r.backlogSamples], uplinkDownSince: null });
    }
    const events: FleetBusEvents = {
      status: (agentId, status) => this.onStatus(agentId, status),
      telemetry: (agentId, t) => this.onTelemetry(agentId, t),
      commandResult: (agentId, result) => {
        this.onCommandResult(agentId, result).catch((err: unknown) =>
          this.log.error({ agent_id: agentId, command_id: result.id, err: { message: (err as Error).message } }, 'recording a command result failed'),
        );
      },
    };
    await this.bus.start(events);
    this.flushTimer = setInterval(() => void this.flush(), this.options.flushIntervalMs ?? 250);
    this.sweepTimer = setInterval(() => void this.sweep(), this.options.sweepIntervalMs ?? 1000);
    await this.publish(() => this.store.listAgents());
    this.log.info({ agents_with_status: this.entries.size }, 'fleet service started; every agent\'s policy was republished');
  }

  /** Stops the timers and writes what is pending; the bus is closed by its owner afterwards. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.flushTimer);
    clearInterval(this.sweepTimer);
    // A publish stuck on an unreachable external broker must not hold up shutdown.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.publishTail.catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)))]);
    clearTimeout(timer);
    await this.flushing;
    await this.flush();
  }

  agentState(agentId: string): AgentFleetState {
    const entry = this.entries.get(agentId);
    const presence = derivePresence(entry, this.now(), this.health);
    return {
      online: presence.online,
      health: presence.health,
      healthReasons: presence.reasons,
      status: entry?.status ?? null,
      statusAt: entry?.receivedAt ?? null,
      telemetry: this.telemetry.get(agentId) ?? null,
    };
  }

  policyChanged(policyId: string): Promise<void> {
    return this.publish(async () => (await this.store.listAgents()).filter((a) => a.policyId === policyId));
  }

  agentPolicyChanged(agentId: string): Promise<void> {
    return this.publish(async () => {
      const agent = await this.store.getAgent(agentId);
      return agent ? [agent] : [];
    });
  }

  async issueCommand(input: { agentId: string; type: CommandMessage['type']; args: Record<string, unknown>; expiresInSecs: number; issuedBy: string }): Promise<CommandRecord> {
    const record = await this.store.createCommand(input);
    const message: CommandMessage = { id: record.id, type: input.type, args: input.args, issued_at: new Date(record.issuedAt).toISOString(), expires_at: new Date(record.expiresAt).toISOString() };
    try {
      await this.bus.publishCommand(input.agentId, message);
    } catch (err) {
      await this.store.finishCommand(input.agentId, record.id, { status: 'failed', result: { error: { code: 'publish_failed', message: 'the fleet bus did not take the command' } } });
      throw new ControlPlaneError('fleet_bus_unavailable', 'the fleet bus did not take the command; it is marked failed', { cause: err });
    }
    this.log.info({ agent_id: input.agentId, command_id: record.id, type: input.type }, 'command sent');
    return record;
  }

  async rollout(policyId: string): Promise<PolicyRollout | undefined> {
    const policy = await this.store.getPolicy(policyId);
    if (!policy) return undefined;
    const agents = (await this.store.listAgents()).filter((a) => a.policyId === policyId && a.revokedAt === null);
    const out: PolicyRollout = { policy_id: policyId, latest_version: policy.latestVersion, agents_total: agents.length, applied_latest: 0, behind: [], failed: [], offline: [] };
    let appliedLatest = 0;
    for (const a of agents) {
      const state = this.agentState(a.id);
      const apply = state.status?.policy?.policy_id === policyId ? state.status.policy : undefined;
      const applied = apply?.applied_version ?? null;
      if (apply && (apply.state === 'failed' || apply.state === 'partial')) {
        out.failed.push({ agent_id: a.id, version: apply.received_version, applied_version: applied, state: apply.state, errors: apply.errors.map((e) => ({ path: e.path, message: e.message })) });
      } else if (applied === policy.latestVersion) appliedLatest++;
      else out.behind.push({ agent_id: a.id, applied_version: applied, online: state.online });
      if (!state.online) out.offline.push({ agent_id: a.id, applied_version: applied });
    }
    return { ...out, applied_latest: appliedLatest };
  }

  async gauges(): Promise<FleetGauges> {
    const agents = (await this.store.listAgents()).filter((a) => a.revokedAt === null);
    const health: Record<AgentHealth, number> = { healthy: 0, degraded: 0, offline: 0 };
    for (const a of agents) health[this.agentState(a.id).health]++;
    return { agents: { online: health.healthy + health.degraded, offline: health.offline }, health, commands: await this.store.countCommandsByStatus() };
  }

  /** Writes the statuses that changed since the last flush, in one transaction. */
  async flush(): Promise<void> {
    if (this.flushing || this.dirty.size === 0) return this.flushing;
    const ids = [...this.dirty];
    this.dirty.clear();
    const records: AgentStatusRecord[] = [];
    for (const id of ids) {
      const e = this.entries.get(id);
      if (e) records.push({ agentId: id, status: e.status, receivedAt: e.receivedAt, online: e.online, appliedPolicyVersion: e.status.policy?.applied_version ?? null, backlogSamples: e.samples });
    }
    this.flushing = this.store
      .saveAgentStatuses(records)
      .catch((err: unknown) => {
        // Kept in memory; written at the next flush.
        for (const id of ids) this.dirty.add(id);
        this.log.error({ agents: ids.length, err: { message: (err as Error).message } }, 'writing agent statuses to the store failed; retrying at the next flush');
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** Marks agents whose heartbeat is late offline, and pending commands past their expiry expired. */
  async sweep(): Promise<void> {
    if (this.sweeping || this.stopped) return;
    this.sweeping = true;
    try {
      const now = this.now();
      for (const [id, e] of this.entries) {
        if (e.online && isLate(e, now, this.health)) {
          e.online = false;
          this.dirty.add(id);
          this.log.info({ agent_id: id, last_status_at: new Date(e.receivedAt).toISOString() }, 'agent offline: its heartbeat is late');
        }
      }
      const expired = await this.store.expireCommands(now);
      for (const c of expired) this.log.info({ agent_id: c.agentId, command_id: c.id, type: c.type }, 'command expired without a result');
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message } }, 'fleet sweep failed; retrying at the next one');
    } finally {
      this.sweeping = false;
    }
  }

  private onStatus(agentId: string, status: StatusMessage): void {
    const before = this.entries.get(agentId);
    const entry = applyStatus(before, status, this.now(), { minGapMs: this.options.backlogSampleGapMs ?? 5000, keep: this.options.backlogSamplesKept ?? 5 });
    this.entries.set(agentId, entry);
    this.dirty.add(agentId);
    const wasOnline = before !== undefined && before.online && !isLate(before, entry.receivedAt, this.health);
    if (wasOnline !== entry.online) {
      if (entry.online) this.log.debug({ agent_id: agentId }, 'agent online');
      else this.log.info({ agent_id: agentId, reason: status.reason ?? 'offline' }, 'agent offline');
    }
  }

  private onTelemetry(agentId: string, t: TelemetryMessage): void {
    this.telemetry.set(agentId, { counters: t.counters, at: this.now() });
  }

  private async onCommandResult(agentId: string, result: CommandResultMessage): Promise<void> {
    const outcome: Record<string, unknown> = {};
    if (result.result !== undefined) outcome.result = result.result;
    if (result.error !== undefined) outcome.error = result.error;
    outcome.finished_at = result.finished_at;
    const done = await this.store.finishCommand(agentId, result.id, { status: result.status, result: outcome });
    if (!done) {
      this.log.debug({ agent_id: agentId, command_id: result.id }, 'command result ignored: unknown, another agent\'s, or already recorded');
      return;
    }
    this.log.info({ agent_id: agentId, command_id: done.id, type: done.type, status: done.status }, 'command finished');
    await this.store.audit({
      actor: `agent:${agentId}`,
      action: 'command.finished',
      target: `command:${done.id}`,
      details: { type: done.type, status: done.status, ...(result.error ? { error_code: result.error.code } : {}) },
    });
  }

  /**
   * Publishes the latest policy version to the agents `select` picks. Publishes run one selection
   * after another, and each reads the store when its turn comes, so two quick changes can never
   * leave an older version as the retained one.
   */
  private publish(select: () => Promise<AgentRecord[]>): Promise<void> {
    const run = async (): Promise<void> => {
      const agents = (await select()).filter((a) => a.revokedAt === null);
      const messages = new Map<string, PolicyMessage | null>();
      let failed = 0;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < agents.length) {
          const agent = agents[next++]!;
          if (!messages.has(agent.policyId)) messages.set(agent.policyId, await this.policyMessage(agent.policyId));
          const message = messages.get(agent.policyId);
          if (!message) continue;
          try {
            await this.bus.publishPolicy(agent.id, message);
          } catch (err) {
            failed++;
            this.log.warn({ agent_id: agent.id, policy_id: agent.policyId, err: { message: (err as Error).message } }, 'publishing a policy failed; it is republished at the next change or restart');
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.options.publishConcurrency ?? 64, agents.length) }, worker));
      if (agents.length > 0) this.log.debug({ agents: agents.length, failed }, 'policies published');
    };
    const result = this.publishTail.then(run);
    this.publishTail = result.catch(() => {});
    return result;
  }

  private async policyMessage(policyId: string): Promise<PolicyMessage | null> {
    const version = await this.store.getPolicyVersion(policyId);
    if (!version) {
      this.log.error({ policy_id: policyId }, 'an agent names a policy the store does not have; nothing published to it');
      return null;
    }
    const checked = validatePolicy(version.config);
    if (!checked.ok) {
      this.log.error({ policy_id: policyId, version: version.version, problems: checked.problems.length }, 'a stored policy no longer validates; nothing published');
      return null;
    }
    return { policy_id: policyId, version: version.version, config: checked.config, published_at: new Date(this.now()).toISOString() };
  }
}
