// The agent's uplink: keeps one stream to the control plane open (a new UplinkSession per
// attempt, on a fresh channel), deletes buffer rows once an Ack covers them, and reconnects with
// full-jitter backoff. Lifecycle like every component: built from (settings, deps), start(),
// stop(deadline), health(), plus status() for the admin document.

import { status } from '@grpc/grpc-js';
import type { ChannelCredentials, ChannelOptions } from '@grpc/grpc-js';
import type { Welcome__Output } from '../../proto/index.js';
import type { AgentMetrics } from '../admin/index.js';
import type { UplinkConfig } from '../config/index.js';
import type { AgentCredentials } from '../enroll/index.js';
import type { Logger } from '../log.js';
import { Backoff } from './backoff.js';
import { channelCredentials, channelOptions, createIngestClient, planChannel, type ChannelPlan } from './channel.js';
import { UplinkSession, type SessionEnd, type UplinkBuffer } from './session.js';

/** Least time between two deletes of acknowledged rows while more Acks keep coming. */
const DELETE_PACING_MS = 200;

export type UplinkState = 'connected' | 'connecting' | 'disconnected' | 'disabled';

export interface UplinkHealth {
  readonly state: UplinkState;
  readonly message: string;
  readonly since: string;
}

export interface UplinkStatus {
  readonly state: UplinkState;
  readonly target: string | null;
  readonly tls: boolean | null;
  readonly pending: { readonly count: number; readonly bytes: number; readonly oldest_age_secs: number | null };
  readonly in_flight_batches: number;
  readonly committed_seq: number | null;
  readonly last_ack_at: string | null;
  readonly last_error: { readonly code: string; readonly message: string; readonly at: string } | null;
  readonly message: string;
}

export type UplinkMetrics = Pick<AgentMetrics, 'uplinkBatchesSent' | 'uplinkMessagesAcked' | 'uplinkReconnects' | 'uplinkConnected'>;

export interface UplinkSettings {
  readonly credentials: Pick<AgentCredentials, 'agent_id' | 'secret' | 'control_plane_url' | 'grpc_target'>;
  readonly config: UplinkConfig;
  readonly agentVersion: string;
  /** How often an idle uplink looks for new rows when nobody calls wake(); default 50 ms. */
  readonly pollIntervalMs?: number;
}

export interface UplinkDeps {
  readonly buffer: UplinkBuffer;
  readonly log: Logger;
  readonly metrics?: UplinkMetrics;
  /** Uniform in [0, 1) for the backoff jitter; injectable for tests. */
  readonly random?: () => number;
}

export class Uplink {
  private readonly log: Logger;
  private readonly plan: ChannelPlan;
  private readonly options: ChannelOptions;
  private readonly backoff: Backoff;
  private creds: ChannelCredentials | undefined;
  private loop: Promise<void> | undefined;
  private session: UplinkSession | undefined;
  private stopping = false;
  private healthValue: UplinkHealth;
  private committedSeq: number | null = null;
  private highestAcked = 0;
  private lastAckAt: number | null = null;
  private lastError: UplinkStatus['last_error'] = null;
  private failuresInARow = 0;
  private readonly dataWaiters = new Set<() => void>();
  private wakeSleep: (() => void) | undefined;
  // Deletes run one at a time; Acks arriving meanwhile raise the target and one more delete covers them.
  private deleteTarget = 0;
  private deletedThrough = 0;
  private deleting: Promise<void> | undefined;

  constructor(
    readonly settings: UplinkSettings,
    private readonly deps: UplinkDeps,
  ) {
    this.plan = planChannel(settings.credentials.control_plane_url, settings.credentials.grpc_target);
    this.options = channelOptions(settings.config);
    this.backoff = new Backoff({
      initialMs: settings.config.retry_initial_delay_secs * 1000,
      maxMs: settings.config.retry_max_delay_secs * 1000,
      ...(deps.random ? { random: deps.random } : {}),
    });
    this.log = deps.log.child({ component: 'uplink', id: 'grpc' });
    this.healthValue = { state: 'disconnected', message: 'not started', since: new Date().toISOString() };
  }

  health(): UplinkHealth {
    return this.healthValue;
  }

  status(): UplinkStatus {
    return {
      state: this.healthValue.state,
      target: this.plan.target,
      tls: this.plan.tls,
      pending: pendingOf(this.deps.buffer),
      in_flight_batches: this.session?.inFlightBatches ?? 0,
      committed_seq: this.committedSeq,
      last_ack_at: this.lastAckAt === null ? null : new Date(this.lastAckAt).toISOString(),
      last_error: this.lastError,
      message: this.healthValue.message,
    };
  }

  async start(): Promise<void> {
    if (this.loop) return;
    // A bad CA file is a configuration error: fail the start, do not retry forever.
    this.creds = channelCredentials(this.plan, this.settings.config.ca_file);
    this.stopping = false;
    this.log.info({ target: this.plan.target, tls: this.plan.tls, agent_id: this.settings.credentials.agent_id }, 'uplink starting');
    this.loop = this.run();
  }

  /** New rows were committed to the buffer: an idle stream sends them now rather than at its next poll. */
  wake(): void {
    for (const w of this.dataWaiters) w();
  }

  /** Push the backlog now (fleet `flush` command): cut short a backoff wait, and wake an idle stream. */
  flush(): void {
    this.backoff.reset();
    this.wakeSleep?.();
    this.wake();
  }

  /** Stops sending, gives batches in flight until the deadline to be acknowledged, cancels the stream. */
  async stop(deadlineMs: number): Promise<void> {
    if (!this.loop) return;
    this.stopping = true;
    this.wakeSleep?.();
    await this.session?.stop(deadlineMs);
    await this.loop;
    this.loop = undefined;
    await this.deleting;
    this.setState('disconnected', 'stopped');
    this.deps.metrics?.uplinkConnected.set(0);
    this.log.info({ committed_seq: this.committedSeq }, 'uplink stopped');
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      this.setState('connecting', `connecting to ${this.plan.target}`);
      const client = createIngestClient(this.plan, this.creds!, this.options);
      const session = new UplinkSession({
        client,
        agentId: this.settings.credentials.agent_id,
        secret: this.settings.credentials.secret,
        agentVersion: this.settings.agentVersion,
        buffer: this.deps.buffer,
        ackTimeoutMs: this.settings.config.ack_timeout_secs * 1000,
        log: this.log,
        waitForData: (seen, signal) => this.waitForData(seen, signal),
        onWelcome: (w) => this.onWelcome(w),
        onBatchSent: () => this.deps.metrics?.uplinkBatchesSent.inc(),
        onAck: (seq, messages) => this.onAck(seq, messages),
      });
      this.session = session;
      session.open();
      const end = await session.done;
      this.session = undefined;
      client.close();
      this.deps.metrics?.uplinkConnected.set(0);
      if (this.stopping) break;
      await this.sleep(this.afterEnd(end));
    }
  }

  /** Records why a stream ended, logs it for the operator, and returns how long to wait. */
  private afterEnd(end: SessionEnd): number {
    this.deps.metrics?.uplinkReconnects.inc();
    if (end.welcomed) this.backoff.reset();
    const auth = end.code === status.UNAUTHENTICATED || end.code === status.PERMISSION_DENIED;
    const code = end.code !== undefined ? (status[end.code] ?? String(end.code)) : end.kind.toUpperCase();
    const previous = this.lastError;
    this.lastError = { code, message: end.details, at: new Date().toISOString() };
    this.failuresInARow = end.welcomed ? 1 : this.failuresInARow + 1;
    const delay = auth ? this.settings.config.retry_max_delay_secs * 1000 : this.backoff.next();
    const fields = { grpc_status: code, details: end.details, retry_in_ms: delay, attempt: this.failuresInARow, pending: this.deps.buffer.stats().depth };
    if (auth) {
      this.setState('disconnected', `credentials refused (${code}): re-enroll this agent`);
      this.log.error(fields, `the control plane refused this agent's credentials (${code}): re-enroll this agent (ferry-agent enroll --force with a new token); messages stay in the buffer meanwhile`);
    } else if (isCertificateFailure(end.details)) {
      // Retrying does not help until the operator acts: say what to change, once per cause.
      this.setState('disconnected', `${code}: ${end.details}; the control plane's certificate is not trusted: set uplink.ca_file to the CA that signed it (and check the host name it names)`);
      if (previous?.message !== end.details) this.log.error(fields, "the control plane's TLS certificate is not trusted: set uplink.ca_file to the CA that signed it; messages stay in the buffer meanwhile");
    } else {
      this.setState('disconnected', `${code}: ${end.details}`);
      // One warning when an outage starts or its cause changes; repeats of the same failure go to debug.
      if (end.welcomed || previous?.code !== code || previous.message !== end.details) {
        this.log.warn(fields, end.kind === 'ack_timeout' ? 'uplink stream stalled; reconnecting (messages stay in the buffer)' : 'uplink disconnected; reconnecting (messages stay in the buffer)');
      } else {
        this.log.debug(fields, 'uplink reconnect attempt failed');
      }
    }
    return delay;
  }

  private onWelcome(w: Welcome__Output): void {
    if (w.committedSeq < this.highestAcked) {
      this.log.error(
        { committed_seq: w.committedSeq, previously_acked: this.highestAcked },
        'the control plane reports fewer committed messages than it acknowledged before (restored from a backup?); messages in between were deleted here after their Ack and may be missing there',
      );
    }
    this.committedSeq = w.committedSeq;
    this.highestAcked = Math.max(this.highestAcked, w.committedSeq);
    this.failuresInARow = 0;
    this.deps.metrics?.uplinkConnected.set(1);
    // Rows the control plane already holds (acknowledged on a stream that then broke) go now.
    this.requestDelete(w.committedSeq);
    const pending = this.deps.buffer.stats();
    this.setState('connected', `connected to ${this.plan.target}`);
    this.log.info(
      { committed_seq: w.committedSeq, pending: pending.depth, limits: { max_batch_messages: w.maxBatchMessages, max_batch_bytes: w.maxBatchBytes, max_in_flight_batches: w.maxInFlightBatches } },
      'uplink connected; resuming after the committed seq',
    );
  }

  private onAck(committedSeq: number, messages: number): void {
    this.committedSeq = committedSeq;
    this.highestAcked = Math.max(this.highestAcked, committedSeq);
    this.lastAckAt = Date.now();
    this.deps.metrics?.uplinkMessagesAcked.inc(messages);
    this.requestDelete(committedSeq);
  }

  private requestDelete(seq: number): void {
    if (seq <= this.deleteTarget) return;
    this.deleteTarget = seq;
    this.deleting ??= this.deleteLoop().finally(() => (this.deleting = undefined));
  }

  private async deleteLoop(): Promise<void> {
    while (this.deleteTarget > this.deletedThrough) {
      const target = this.deleteTarget;
      try {
        await this.deps.buffer.deleteThrough(target);
        this.deletedThrough = target;
        // Deletes share the buffer's one writer with ingest: pace them, so that under load many
        // Acks make one delete. Acknowledged rows that wait a little are harmless (a reconnect's
        // Welcome says they are committed, and they are never resent).
        if (this.deleteTarget > this.deletedThrough) await new Promise((r) => setTimeout(r, DELETE_PACING_MS));
      } catch (err) {
        // The rows stay; the next Ack (or Welcome) asks again, and the control plane ignores resends.
        this.log.warn({ err: { message: (err as Error).message }, seq: target }, 'deleting acknowledged rows from the buffer failed; will retry on the next Ack');
        this.deleteTarget = this.deletedThrough;
        return;
      }
    }
  }

  private waitForData(seenCommits: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearInterval(timer);
        this.dataWaiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setInterval(() => {
        if (this.deps.buffer.stats().commits !== seenCommits) done();
      }, this.settings.pollIntervalMs ?? 50);
      this.dataWaiters.add(done);
      signal.addEventListener('abort', done, { once: true });
      if (signal.aborted || this.deps.buffer.stats().commits !== seenCommits) done();
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeSleep = undefined;
        resolve();
      }, ms);
      this.wakeSleep = () => {
        clearTimeout(timer);
        this.wakeSleep = undefined;
        resolve();
      };
    });
  }

  private setState(state: UplinkState, message: string): void {
    if (state !== this.healthValue.state || message !== this.healthValue.message) {
      this.healthValue = { state, message, since: state === this.healthValue.state ? this.healthValue.since : new Date().toISOString() };
    }
  }
}

export function pendingOf(buffer: Pick<UplinkBuffer, 'stats'>): UplinkStatus['pending'] {
  const s = buffer.stats();
  return { count: s.depth, bytes: s.bytes, oldest_age_secs: s.oldestReceivedAt === null ? null : (Date.now() - s.oldestReceivedAt) / 1000 };
}

/** grpc-js reports a failed TLS verification as UNAVAILABLE with OpenSSL's reason in the details. */
function isCertificateFailure(details: string): boolean {
  return /certificate|self[- ]signed|altname|does not match/i.test(details);
}

/** The status of an uplink that is not running (not enrolled, disabled in config, bad credentials file). */
export function disabledUplinkStatus(buffer: Pick<UplinkBuffer, 'stats'>, message: string, lastError: UplinkStatus['last_error'] = null): UplinkStatus {
  return { state: 'disabled', target: null, tls: null, pending: pendingOf(buffer), in_flight_batches: 0, committed_seq: null, last_ack_at: null, last_error: lastError, message };
}
