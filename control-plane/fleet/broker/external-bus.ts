// The fleet bus over an external broker (Mosquitto, EMQX): the control plane is an ordinary MQTT
// client with its own credentials (username + password read from password_file, never a flag),
// subscribed to every agent's status, telemetry and command results. mqtt.js reconnects and
// resubscribes; we stretch its reconnect period with backoff and jitter and report the state.
// The broker enforces the per-agent rules (for Mosquitto, with the files mosquitto-files.ts writes).

import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { AGENT_TOPICS, agentTopic, type CommandMessage, type PolicyMessage } from '../../../proto/fleet/index.js';
import { ControlPlaneError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { FleetBus, FleetBusEvents, FleetBusHealth } from '../bus.js';
import { BusCounters, CONTROL_PLANE_FILTERS, dispatchAgentMessage } from './bus-events.js';
import type { MosquittoFiles } from './mosquitto-files.js';
import { withoutCredentials, type ExternalBusOptions } from './options.js';

const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30_000;
/** start() waits this long for the first connection, then lets the control plane run and report not-ready. */
const FIRST_CONNECT_WAIT_MS = 10_000;

export class ExternalFleetBus implements FleetBus {
  private readonly tally = new BusCounters();
  private client: MqttClient | undefined;
  private state: FleetBusHealth = { state: 'stopped', message: 'not started', since: Date.now() };
  private reconnectMs = RECONNECT_MIN_MS;

  constructor(
    private readonly options: ExternalBusOptions,
    private readonly deps: { log: Logger; mosquittoFiles?: MosquittoFiles },
  ) {}

  get agentUrl(): string {
    return withoutCredentials(this.options.advertiseUrl ?? this.options.url);
  }

  async start(events: FleetBusEvents): Promise<void> {
    if (this.client) throw new ControlPlaneError('fleet_bus_unavailable', 'the fleet bus is already started');
    const log = this.deps.log;
    // Mosquitto must know the control plane's own user before it connects.
    await this.deps.mosquittoFiles?.sync('start');
    const password = this.options.passwordFile !== undefined ? readSecretFile(this.options.passwordFile) : undefined;
    const brokerUrl = withoutCredentials(this.options.url);
    const client = mqtt.connect(this.options.url, {
      username: this.options.username,
      password,
      // Unique per process: two control planes on one broker must not take over each other's session.
      clientId: `ferry-cp-${(this.options.username ?? 'anon').slice(0, 40)}-${process.pid}`,
      clean: true,
      protocolVersion: 4,
      keepalive: 30,
      connectTimeout: 10_000,
      reconnectPeriod: RECONNECT_MIN_MS,
      ca: this.options.caFile !== undefined ? readFileSync(this.options.caFile) : undefined,
      rejectUnauthorized: true,
    });
    this.client = client;
    this.setState('connecting', `connecting to ${brokerUrl}`);
    client.on('message', (topic, payload) => dispatchAgentMessage(topic, payload, events, this.tally, log));
    client.on('error', (err) => {
      this.setState(this.state.state === 'connected' ? 'connected' : 'disconnected', `broker ${brokerUrl}: ${err.message}`);
      log.warn({ component: 'fleet', broker: brokerUrl, err: { message: err.message } }, 'MQTT broker error; the connection is retried with backoff');
    });
    client.on('close', () => {
      if (this.state.state === 'connected') log.warn({ component: 'fleet', broker: brokerUrl }, 'lost the connection to the MQTT broker; reconnecting');
      if (this.state.state !== 'stopped') this.setState('disconnected', `not connected to ${brokerUrl}`);
      // Exponential backoff with jitter; mqtt.js reads the period when it schedules the next try.
      this.reconnectMs = Math.min(RECONNECT_MAX_MS, this.reconnectMs * 2);
      client.options.reconnectPeriod = Math.round(this.reconnectMs * (0.5 + Math.random() / 2));
    });
    client.on('reconnect', () => this.tally.add('reconnects'));
    const subscribed = new Promise<void>((resolve) => {
      client.on('connect', (connack) => {
        this.reconnectMs = RECONNECT_MIN_MS;
        client.options.reconnectPeriod = RECONNECT_MIN_MS;
        // A clean session has no subscriptions; mqtt.js resubscribes what we subscribed before, the first time we do it here.
        if (connack.sessionPresent) return;
        client.subscribe(
          [...CONTROL_PLANE_FILTERS],
          { qos: 1 },
          (err, granted) => {
            const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
            if (err || refused.length > 0) {
              this.setState('disconnected', `the broker refused the control plane's subscriptions (${err?.message ?? refused.join(', ')}); check its ACL`);
              log.error({ component: 'fleet', broker: brokerUrl, refused }, "the MQTT broker refused the control plane's subscriptions; check the broker's ACL for the control plane user");
              return;
            }
            this.setState('connected', `connected to ${brokerUrl}`);
            log.info({ component: 'fleet', broker: brokerUrl }, 'connected to the MQTT broker and subscribed');
            resolve();
          },
        );
      });
    });
    const waited = await Promise.race([subscribed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), FIRST_CONNECT_WAIT_MS).unref())]);
    if (!waited) log.warn({ component: 'fleet', broker: brokerUrl }, 'the MQTT broker is not reachable yet; the control plane runs and keeps trying (see /readyz)');
  }

  health(): FleetBusHealth {
    return this.state;
  }

  publishPolicy(agentId: string, message: PolicyMessage): Promise<void> {
    return this.publish(agentTopic(agentId, AGENT_TOPICS.policy), Buffer.from(JSON.stringify(message)), true);
  }

  publishCommand(agentId: string, command: CommandMessage): Promise<void> {
    return this.publish(agentTopic(agentId, AGENT_TOPICS.commands), Buffer.from(JSON.stringify(command)), false);
  }

  /**
   * Takes the agent out of Mosquitto's password file (when the control plane keeps it) and clears
   * its retained messages. Mosquitto 2.0 keeps an already open connection after a reload; it
   * cannot reconnect, and it never could reach another agent's topics.
   */
  async forgetAgent(agentId: string): Promise<void> {
    await this.deps.mosquittoFiles?.sync('agent revoked');
    await this.publish(agentTopic(agentId, AGENT_TOPICS.policy), Buffer.alloc(0), true);
    await this.publish(agentTopic(agentId, AGENT_TOPICS.status), Buffer.alloc(0), true);
  }

  async agentEnrolled(_agentId: string): Promise<void> {
    await this.deps.mosquittoFiles?.sync('agent enrolled');
  }

  connectedAgents(): undefined {
    return undefined;
  }

  counters(): Readonly<Record<string, number>> {
    return { ...this.tally.values, broker_connected: this.state.state === 'connected' ? 1 : 0 };
  }

  async close(): Promise<void> {
    const client = this.client;
    this.setState('stopped', 'closed');
    if (client) await client.endAsync(false).catch(() => client.end(true));
    this.client = undefined;
  }

  private setState(state: FleetBusHealth['state'], message: string): void {
    this.state = { state, message, since: state === this.state.state ? this.state.since : Date.now() };
  }

  private publish(topic: string, payload: Buffer, retain: boolean): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new ControlPlaneError('fleet_bus_unavailable', 'the fleet bus is not started'));
    // QoS 1: mqtt.js keeps it while disconnected and sends it on reconnect; resolves on PUBACK.
    return client.publishAsync(topic, payload, { qos: 1, retain }).then(
      () => void this.tally.add('messages_out'),
      (err: Error) => {
        throw new ControlPlaneError('fleet_bus_unavailable', `the fleet bus could not publish: ${err.message}`, { cause: err });
      },
    );
  }
}

/** The first line of a secret file, without its newline. */
function readSecretFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (err) {
    throw new ControlPlaneError('fleet_bus_config', `cannot read mqtt.password_file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}
