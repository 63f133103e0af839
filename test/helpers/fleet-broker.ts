// A real MQTT broker for agent fleet tests (aedes in-process on 127.0.0.1:0) that checks each
// agent's username/password and the per-agent topic rule from proto/fleet, plus a "control plane"
// client that publishes policies and commands the way the control plane does and records every
// status and command result it sees.

import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { connectAsync, type MqttClient } from 'mqtt';
import {
  agentMayPublish,
  agentMaySubscribe,
  agentTopic,
  commandResultMessageSchema,
  statusMessageSchema,
  type CommandResultMessage,
  type PolicyMessageInput,
  type StatusMessage,
  type TelemetryMessage,
  telemetryMessageSchema,
} from '../../proto/fleet/index.js';
import { waitFor } from './mllp-harness.js';

export interface TestBroker {
  readonly port: number;
  readonly url: string;
  /** Closes the listener and every client connection (as if the broker went away). */
  close(): Promise<void>;
}

const CONTROLLER = 'test-control-plane';

/** Starts aedes on `port` (0: any). `agents` maps agent id → secret; the controller needs no password. */
export async function startBroker(agents: Record<string, string>, port = 0): Promise<TestBroker> {
  const broker = await Aedes.createBroker({
    authenticate: (client, username, password, done) => {
      if (client.id === CONTROLLER) return done(null, true);
      const ok = username === client.id && agents[client.id] !== undefined && password?.toString() === agents[client.id];
      if (ok) return done(null, true);
      done(Object.assign(new Error('bad credentials'), { returnCode: 4 as const }), false);
    },
    authorizePublish: (client, packet, callback) => {
      if (!client || client.id === CONTROLLER || agentMayPublish(client.id, packet.topic)) return callback(null);
      callback(new Error('not allowed'));
    },
    authorizeSubscribe: (client, sub, callback) => {
      if (client.id === CONTROLLER || agentMaySubscribe(client.id, sub.topic)) return callback(null, sub);
      callback(new Error('not allowed'));
    },
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    broker.handle(socket);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const bound = (server.address() as { port: number }).port;
  return {
    port: bound,
    url: `mqtt://127.0.0.1:${bound}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

export interface Controller {
  readonly statuses: StatusMessage[];
  readonly results: CommandResultMessage[];
  readonly telemetry: TelemetryMessage[];
  /** The latest retained status, as a subscriber arriving now would get it. */
  latestStatus(): StatusMessage | undefined;
  publishPolicy(message: PolicyMessageInput | Record<string, unknown>): Promise<void>;
  publishCommand(command: Record<string, unknown>): Promise<void>;
  waitForStatus(check: (s: StatusMessage) => boolean, label: string, timeoutMs?: number): Promise<StatusMessage>;
  waitForResult(id: string, timeoutMs?: number): Promise<CommandResultMessage>;
  close(): Promise<void>;
}

export async function startController(url: string, agentId: string): Promise<Controller> {
  const client: MqttClient = await connectAsync(url, { clientId: CONTROLLER, protocolVersion: 4, reconnectPeriod: 200 });
  const statuses: StatusMessage[] = [];
  const results: CommandResultMessage[] = [];
  const telemetry: TelemetryMessage[] = [];
  client.on('message', (topic, payload) => {
    if (payload.length === 0) return;
    const json: unknown = JSON.parse(payload.toString('utf8'));
    if (topic === agentTopic(agentId, 'status')) statuses.push(statusMessageSchema.parse(json));
    if (topic === agentTopic(agentId, 'command-results')) results.push(commandResultMessageSchema.parse(json));
    if (topic === agentTopic(agentId, 'telemetry')) telemetry.push(telemetryMessageSchema.parse(json));
  });
  await client.subscribeAsync({ [agentTopic(agentId, 'status')]: { qos: 1 }, [agentTopic(agentId, 'command-results')]: { qos: 1 }, [agentTopic(agentId, 'telemetry')]: { qos: 0 } });
  return {
    statuses,
    results,
    telemetry,
    latestStatus: () => statuses.at(-1),
    async publishPolicy(message) {
      await client.publishAsync(agentTopic(agentId, 'policy'), JSON.stringify(message), { qos: 1, retain: true });
    },
    async publishCommand(command) {
      await client.publishAsync(agentTopic(agentId, 'commands'), JSON.stringify(command), { qos: 1 });
    },
    async waitForStatus(check, label, timeoutMs = 15_000) {
      let found: StatusMessage | undefined;
      await waitFor(() => (found = [...statuses].reverse().find(check)) !== undefined, timeoutMs, label);
      return found!;
    },
    async waitForResult(id, timeoutMs = 15_000) {
      let found: CommandResultMessage | undefined;
      await waitFor(() => (found = results.find((r) => r.id === id)) !== undefined, timeoutMs, `result of command ${id}`);
      return found!;
    },
    async close() {
      await client.endAsync(true);
    },
  };
}

/** A command message as the control plane builds it. */
export function command(id: string, type: string, args: Record<string, unknown> = {}, ttlMs = 60_000): Record<string, unknown> {
  const now = Date.now();
  return { id, type, args, issued_at: new Date(now).toISOString(), expires_at: new Date(now + ttlMs).toISOString() };
}

let policyVersion = 0;
/** A policy message for `config` (version given or increasing). */
export function policy(config: Record<string, unknown>, version = ++policyVersion, policyId = 'pol_test'): PolicyMessageInput {
  return { policy_id: policyId, version, config: config as PolicyMessageInput['config'], published_at: new Date().toISOString() };
}
