// The embedded fleet bus: an aedes broker on a TCP (or TLS) listener, in the control-plane
// process. The control plane itself is not an MQTT client: it publishes with aedes.publish and
// receives through aedes.subscribe, so it needs no credentials and no socket of its own.
// Retained messages and QoS 1 sessions live in aedes' memory persistence and are lost on restart;
// the fleet service republishes every agent's policy when it starts.

import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client } from 'aedes';
import { AGENT_TOPICS, agentTopic, type CommandMessage, type PolicyMessage } from '../../../proto/fleet/index.js';
import { ControlPlaneError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { FleetBus, FleetBusEvents, FleetBusHealth } from '../bus.js';
import { agentAuthHooks, type AgentVerifier } from './agent-auth.js';
import { BusCounters, CONTROL_PLANE_FILTERS, dispatchAgentMessage } from './bus-events.js';
import type { EmbeddedBusOptions } from './options.js';
import { LimitedConnection } from './packet-limit.js';
import { indexRetainedByTopic } from './retained-index.js';

/** Agent ids are UUIDs (36 characters); aedes' default cap of 23 is MQTT 3.1's. */
const MAX_CLIENT_ID_CHARS = 128;

export class EmbeddedFleetBus implements FleetBus {
  private readonly tally = new BusCounters();
  private readonly connected = new Map<string, Client>();
  private readonly server: Server;
  private broker: Aedes | undefined;
  private events: FleetBusEvents | undefined;
  private boundPort: number | undefined;
  private startedAt = Date.now();
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly options: EmbeddedBusOptions,
    private readonly deps: { store: AgentVerifier; log: Logger },
  ) {
    const onConnection = (socket: Socket): void => this.accept(socket);
    this.server = options.tls
      ? createTlsServer({ cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile), minVersion: 'TLSv1.2' }, onConnection)
      : createTcpServer(onConnection);
  }

  /** Where agents connect: advertise_url, or the bound port on the listen host (loopback for a wildcard listen). The enroll route puts the request's host in instead. */
  get agentUrl(): string {
    if (this.options.advertiseUrl !== undefined) return this.options.advertiseUrl;
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    return `${this.options.tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${this.boundPort ?? this.options.port}`;
  }

  /** The bound address (after start). */
  address(): { host: string; port: number } | undefined {
    const a = this.server.address() as AddressInfo | null;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  async start(events: FleetBusEvents): Promise<void> {
    if (this.broker) throw new ControlPlaneError('fleet_bus_unavailable', 'the fleet bus is already started');
    this.events = events;
    const log = this.deps.log;
    const broker = new Aedes({
      ...agentAuthHooks({ store: this.deps.store, log, counters: this.tally }),
      connectTimeout: this.options.connectTimeoutMs,
      maxClientsIdLength: MAX_CLIENT_ID_CHARS,
    });
    await broker.listen();
    // Before any client connects: SUBSCRIBE must not scan every agent's retained policy (retained-index.ts).
    // aedes' typings omit `persistence`; indexRetainedByTopic checks what it gets.
    indexRetainedByTopic((broker as unknown as { persistence: unknown }).persistence);
    this.broker = broker;
    broker.on('clientReady', (client) => {
      this.connected.set(client.id, client);
      log.debug({ component: 'fleet', agent_id: client.id }, 'agent connected to the fleet bus');
    });
    broker.on('clientDisconnect', (client) => {
      // A reconnect under the same id replaces the old client before the old one's disconnect arrives.
      if (this.connected.get(client.id) === client) this.connected.delete(client.id);
    });
    broker.on('clientError', (client, err) => log.debug({ component: 'fleet', agent_id: client.id, err: { message: err.message } }, 'MQTT client error'));
    broker.on('connectionError', (_client, err) => log.debug({ component: 'fleet', err: { message: err.message } }, 'MQTT connection error before CONNECT'));
    const deliver = (packet: AedesPublishPacket, done: () => void): void => {
      if (this.events) dispatchAgentMessage(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), this.events, this.tally, log);
      done();
    };
    await Promise.all(CONTROL_PLANE_FILTERS.map((filter) => new Promise<void>((resolve) => broker.subscribe(filter, deliver, resolve))));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new ControlPlaneError('listen_failed', `MQTT cannot listen on ${this.options.host}:${this.options.port}: ${err.message}; choose another port (--mqtt-port, mqtt.listen) or point --mqtt-url at the broker that holds it`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    }).catch(async (err: unknown) => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      this.broker = undefined;
      throw err;
    });
    this.boundPort = this.address()?.port;
    this.startedAt = Date.now();
  }

  private accept(socket: Socket): void {
    const broker = this.broker;
    if (!broker) return void socket.destroy();
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.setNoDelay(true);
    const conn = new LimitedConnection(socket, this.options.maxPacketBytes, () => {
      this.tally.add('packets_too_large');
      this.deps.log.warn({ component: 'fleet', remote: socket.remoteAddress, max_packet_bytes: this.options.maxPacketBytes }, 'MQTT connection closed: a packet exceeded max_packet_bytes');
    });
    conn.on('error', () => {}); // aedes handles and logs the client's errors; this keeps a late one from being unhandled
    broker.handle(conn);
  }

  publishPolicy(agentId: string, message: PolicyMessage): Promise<void> {
    return this.publish(agentTopic(agentId, AGENT_TOPICS.policy), Buffer.from(JSON.stringify(message)), true);
  }

  publishCommand(agentId: string, command: CommandMessage): Promise<void> {
    return this.publish(agentTopic(agentId, AGENT_TOPICS.commands), Buffer.from(JSON.stringify(command)), false);
  }

  async forgetAgent(agentId: string): Promise<void> {
    // An empty retained payload deletes the retained message (MQTT 3.1.1 §3.3.1.3).
    await this.publish(agentTopic(agentId, AGENT_TOPICS.policy), Buffer.alloc(0), true);
    await this.publish(agentTopic(agentId, AGENT_TOPICS.status), Buffer.alloc(0), true);
    const client = this.connected.get(agentId);
    if (client) {
      this.deps.log.info({ component: 'fleet', agent_id: agentId }, 'closed the MQTT connection of a revoked agent');
      await new Promise<void>((resolve) => client.close(() => resolve()));
      this.connected.delete(agentId);
    }
  }

  health(): FleetBusHealth {
    const a = this.address();
    return a ? { state: 'listening', message: `MQTT listening on ${a.host}:${a.port}`, since: this.startedAt } : { state: 'stopped', message: 'the embedded MQTT broker is not listening', since: this.startedAt };
  }

  connectedAgents(): ReadonlySet<string> {
    return new Set(this.connected.keys());
  }

  counters(): Readonly<Record<string, number>> {
    return { ...this.tally.values, connected_clients: this.connected.size };
  }

  async close(): Promise<void> {
    const broker = this.broker;
    this.events = undefined;
    const serverClosed = new Promise<void>((resolve) => (this.server.listening ? this.server.close(() => resolve()) : resolve()));
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await serverClosed;
    this.broker = undefined;
  }

  private publish(topic: string, payload: Buffer, retain: boolean): Promise<void> {
    const broker = this.broker;
    if (!broker) return Promise.reject(new ControlPlaneError('fleet_bus_unavailable', 'the fleet bus is not started'));
    return new Promise((resolve, reject) => {
      broker.publish({ cmd: 'publish', topic, payload, qos: 1, retain, dup: false }, (err) => {
        if (err) return reject(new ControlPlaneError('fleet_bus_unavailable', `the fleet bus could not publish: ${err.message}`, { cause: err }));
        this.tally.add('messages_out');
        resolve();
      });
    });
  }
}
