// The MQTT side of the fleet client: one connection to the broker as this agent (client id =
// username = agent id, password = secret), MQTT v5 with a fall back to 3.1.1 for brokers that
// refuse v5 (aedes), a persistent session (commands sent while the agent is briefly away still
// arrive), a retained last will that marks the agent offline, retained status on connect, on
// change (at most once a second) and every heartbeat, and telemetry at its own interval.
// Reconnects are this client's, not mqtt.js's fixed period: exponential backoff with full jitter
// (backoff.ts), so a fleet that lost its broker does not come back all at once.
// What the messages mean is not decided here: policies and commands go to the handlers.

import { readFileSync } from 'node:fs';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { agentTopic, type CommandResultMessage, type StatusMessage, type TelemetryMessage } from '../../proto/fleet/index.js';
import { isUntrustedCertificateCode } from '../certificate-errors.js';
import type { FleetConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { ReconnectBackoff } from './backoff.js';

/** The status body the agent supplies; the client adds who, online, heartbeat and when. */
export type StatusBody = Omit<StatusMessage, 'agent_id' | 'online' | 'reason' | 'sent_at' | 'heartbeat_secs'>;

export interface FleetHandlers {
  status(): StatusBody;
  telemetry(): Record<string, number>;
  /** A message on the policy topic (raw JSON, or undefined when it was not JSON). */
  policy(raw: unknown): Promise<void>;
  /** A message on the commands topic; answers the result to publish (if any) and what to do after it is delivered. */
  command(raw: unknown): Promise<{ result: CommandResultMessage; after?: () => void } | undefined>;
}

export interface FleetClientOptions {
  readonly agentId: string;
  readonly secret: string;
  readonly url: string;
  readonly config: FleetConfig;
  readonly log: Logger;
  readonly handlers: FleetHandlers;
}

export type FleetConnectionState = 'connecting' | 'connected' | 'disconnected' | 'stopped';

export interface FleetConnectionStatus {
  readonly state: FleetConnectionState;
  /** The broker URL without credentials. */
  readonly broker: string;
  readonly protocol: 'mqtt5' | 'mqtt3.1.1';
  readonly since: string;
  readonly last_error: { code: string; message: string; at: string } | null;
}

/** Least time between two status publishes caused by changes (the heartbeat publishes regardless). */
const STATUS_MIN_INTERVAL_MS = 1000;
/** The longest a clean stop waits for the broker to take the offline status. */
const OFFLINE_PUBLISH_WAIT_MS = 2000;
/** Persistent session lifetime (v5); 3.1.1 brokers keep clean:false sessions until they decide. */
const SESSION_EXPIRY_SECS = 7 * 24 * 3600;
/** CONNACK codes that mean "this broker does not speak MQTT v5" (3.1.1: 1, v5: 0x84). */
const PROTOCOL_REFUSED = new Set([1, 0x84]);

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid url)';
  }
}

export class FleetClient {
  private client: MqttClient | undefined;
  private protocolVersion: 5 | 4 = 5;
  private stateValue: FleetConnectionState = 'disconnected';
  private since = new Date().toISOString();
  private lastError: FleetConnectionStatus['last_error'] = null;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private lastStatusAt = 0;
  private lastSignature = '';
  private statusDue = false;
  /** Policies and commands are handled one at a time, in arrival order. */
  private chain: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  private readonly topics;
  private readonly backoff: ReconnectBackoff;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: FleetClientOptions) {
    this.log = options.log.child({ component: 'fleet', id: 'mqtt' });
    this.backoff = new ReconnectBackoff({ baseMs: options.config.reconnect_delay_secs * 1000 });
    const id = options.agentId;
    this.topics = {
      policy: agentTopic(id, 'policy'),
      commands: agentTopic(id, 'commands'),
      results: agentTopic(id, 'command-results'),
      status: agentTopic(id, 'status'),
      telemetry: agentTopic(id, 'telemetry'),
    };
  }

  status(): FleetConnectionStatus {
    return {
      state: this.stateValue,
      broker: redactUrl(this.options.url),
      protocol: this.protocolVersion === 5 ? 'mqtt5' : 'mqtt3.1.1',
      since: this.since,
      last_error: this.lastError,
    };
  }

  start(): void {
    this.connectNow();
    const cfg = this.options.config;
    // Changes are looked for every second; the heartbeat republishes even without one.
    this.timers.push(setInterval(() => this.maybePublishStatus(false), STATUS_MIN_INTERVAL_MS));
    this.timers.push(setInterval(() => this.maybePublishStatus(true), cfg.heartbeat_secs * 1000));
    this.timers.push(setInterval(() => this.publishTelemetry(), cfg.telemetry_secs * 1000));
    for (const t of this.timers) t.unref();
  }

  /** Something the status shows changed (a policy applied, a source failed): publish soon. */
  notifyChange(): void {
    this.statusDue = true;
    if (Date.now() - this.lastStatusAt >= STATUS_MIN_INTERVAL_MS) this.maybePublishStatus(false);
  }

  /** Clean stop: retained offline status (waiting for the broker's PUBACK, bounded), then DISCONNECT (no last will). */
  async stop(reason = 'shutdown'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      const offline: StatusMessage = { agent_id: this.options.agentId, online: false, reason, sent_at: new Date().toISOString() };
      try {
        await withTimeout(client.publishAsync(this.topics.status, JSON.stringify(offline), { qos: 1, retain: true }), OFFLINE_PUBLISH_WAIT_MS);
      } catch (err) {
        this.log.warn({ err: { message: (err as Error).message } }, 'offline status not confirmed by the broker before stopping; the last will marks the agent offline instead');
      }
    }
    await withTimeout(client.endAsync(), OFFLINE_PUBLISH_WAIT_MS).catch(() => client.end(true));
    this.setState('stopped');
    this.log.info('fleet client stopped');
  }

  private connectNow(): void {
    const cfg = this.options.config;
    const will: StatusMessage = { agent_id: this.options.agentId, online: false, reason: 'lost', sent_at: new Date().toISOString() };
    const opts: IClientOptions = {
      clientId: this.options.agentId,
      username: this.options.agentId,
      password: this.options.secret,
      protocolVersion: this.protocolVersion,
      clean: false,
      keepalive: cfg.keepalive_secs,
      connectTimeout: cfg.connect_timeout_secs * 1000,
      // 0: mqtt.js never reconnects by itself (its period is fixed); scheduleReconnect does, with jitter.
      reconnectPeriod: 0,
      resubscribe: false,
      will: { topic: this.topics.status, payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true },
      ...(this.protocolVersion === 5 ? { properties: { sessionExpiryInterval: SESSION_EXPIRY_SECS } } : {}),
      ...(cfg.ca_file ? { ca: readFileSync(cfg.ca_file), rejectUnauthorized: true } : {}),
    };
    this.setState('connecting');
    const client = connect(this.options.url, opts);
    this.client = client;
    client.on('connect', (connack) => {
      if (this.client !== client) return;
      this.backoff.reset();
      this.setState('connected');
      this.log.info({ broker: redactUrl(this.options.url), protocol: this.status().protocol, session_present: connack.sessionPresent }, 'fleet connected');
      this.onConnected(client);
    });
    client.on('message', (topic, payload) => {
      if (this.client !== client) return;
      this.enqueue(topic, payload);
    });
    client.on('error', (err: Error & { code?: number | string }) => {
      if (this.client !== client) return;
      if (this.protocolVersion === 5 && typeof err.code === 'number' && PROTOCOL_REFUSED.has(err.code)) {
        this.log.info({ broker: redactUrl(this.options.url) }, 'broker does not speak MQTT v5; using MQTT 3.1.1');
        this.protocolVersion = 4;
        client.end(true);
        if (!this.stopped) this.connectNow();
        return;
      }
      const code = err.code === undefined ? 'mqtt_error' : String(err.code);
      const message = isUntrustedCertificateCode(err.code) ? `${err.message}; the broker's certificate is not trusted: set fleet.ca_file to the CA that signed it` : err.message;
      const changed = this.lastError?.message !== message;
      this.lastError = { code, message, at: new Date().toISOString() };
      // The password is never part of an mqtt.js error; log once per distinct failure.
      if (changed) this.log.warn({ err: { code, message }, broker: redactUrl(this.options.url) }, 'fleet connection failed; retrying (the agent keeps running its current policy)');
    });
    client.on('close', () => {
      if (this.client !== client || this.stopped) return;
      if (this.stateValue === 'connected') this.log.warn('fleet connection lost; reconnecting');
      this.setState('disconnected');
      this.scheduleReconnect(client);
    });
  }

  /** The next attempt after a random delay in a window that doubles with each failure (backoff.ts). */
  private scheduleReconnect(client: MqttClient): void {
    if (this.reconnectTimer !== undefined) return;
    const delay = this.backoff.next();
    this.log.debug({ delay_ms: delay }, 'fleet reconnect scheduled');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.client !== client || this.stopped || client.connected) return;
      this.setState('connecting');
      // connect() (not reconnect()) keeps the session's stores: unacknowledged QoS 1 publishes are resent.
      client.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private onConnected(client: MqttClient): void {
    this.publishStatusNow();
    client.subscribe(
      { [this.topics.policy]: { qos: 1 }, [this.topics.commands]: { qos: 1 } },
      (err, granted) => {
        if (err) {
          this.log.error({ err: { message: err.message } }, 'subscribing to the policy and commands topics failed; reconnecting');
          // Dropping the connection hands over to scheduleReconnect; the next session subscribes again.
          if (client.connected) client.stream.destroy();
          return;
        }
        const refused = (granted ?? []).filter((g) => g.qos > 2);
        if (refused.length > 0) this.log.error({ topics: refused.map((g) => g.topic) }, 'the broker refused a subscription: check its ACL for this agent');
      },
    );
  }

  private enqueue(topic: string, payload: Buffer): void {
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString('utf8'));
    } catch {
      raw = undefined;
    }
    this.chain = this.chain.then(async () => {
      try {
        if (topic === this.topics.policy) {
          // An empty retained message clears the topic; nothing to apply.
          if (payload.length === 0) return;
          await this.options.handlers.policy(raw);
          this.notifyChange();
        } else if (topic === this.topics.commands) {
          const answer = await this.options.handlers.command(raw);
          if (!answer) return;
          await this.publishResult(answer.result);
          answer.after?.();
        }
      } catch (err) {
        this.log.error({ err: { message: (err as Error).message }, topic }, 'handling a fleet message failed');
      }
    });
  }

  /** Publishes a command result at QoS 1 and waits (bounded) for the broker to take it. */
  private async publishResult(result: CommandResultMessage): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      await withTimeout(client.publishAsync(this.topics.results, JSON.stringify(result), { qos: 1 }), 5000);
    } catch (err) {
      // mqtt.js keeps unacknowledged QoS 1 publishes and resends them after a reconnect.
      this.log.warn({ err: { message: (err as Error).message }, command_id: result.id }, 'command result not yet confirmed by the broker; it is resent after reconnecting');
    }
  }

  private statusMessage(): StatusMessage {
    return {
      ...this.options.handlers.status(),
      agent_id: this.options.agentId,
      online: true,
      heartbeat_secs: this.options.config.heartbeat_secs,
      sent_at: new Date().toISOString(),
    };
  }

  private maybePublishStatus(heartbeat: boolean): void {
    if (!this.client?.connected || this.stopped) return;
    if (heartbeat) {
      this.publishStatusNow();
      return;
    }
    const signature = statusSignature(this.options.handlers.status());
    if (signature !== this.lastSignature) this.statusDue = true;
    if (this.statusDue && Date.now() - this.lastStatusAt >= STATUS_MIN_INTERVAL_MS) this.publishStatusNow();
  }

  private publishStatusNow(): void {
    const client = this.client;
    if (!client?.connected) return;
    const message = this.statusMessage();
    this.lastSignature = statusSignature(message);
    this.lastStatusAt = Date.now();
    this.statusDue = false;
    client.publish(this.topics.status, JSON.stringify(message), { qos: 1, retain: true }, (err) => {
      if (err) this.log.debug({ err: { message: err.message } }, 'status publish failed; the next heartbeat sends a fresh one');
    });
  }

  private publishTelemetry(): void {
    const client = this.client;
    if (!client?.connected || this.stopped) return;
    const message: TelemetryMessage = { agent_id: this.options.agentId, counters: this.options.handlers.telemetry(), sent_at: new Date().toISOString() };
    client.publish(this.topics.telemetry, JSON.stringify(message), { qos: 0 });
  }

  private setState(state: FleetConnectionState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.since = new Date().toISOString();
  }
}

/** What a change means for the status: states and versions, not counters or ages (those ride the heartbeat). */
function statusSignature(s: StatusBody): string {
  return JSON.stringify({
    policy: s.policy,
    full: s.buffer?.full,
    uplink: s.uplink?.state,
    sources: s.sources?.map((x) => [x.id, x.state, x.last_error?.message]),
    last_error: s.last_error?.message,
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
