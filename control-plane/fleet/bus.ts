// The control plane's side of the MQTT fleet bus, whichever broker carries it: the embedded aedes
// broker (default) or an external one (Mosquitto, EMQX) reached with --mqtt-url. The fleet service
// (policies, status, commands) talks only to this interface.

import type { CommandMessage, CommandResultMessage, PolicyMessage, StatusMessage, TelemetryMessage } from '../../proto/fleet/index.js';

export interface FleetBusEvents {
  /** A status an agent published (or its last will), already validated; agentId comes from the topic. */
  status(agentId: string, status: StatusMessage): void;
  telemetry(agentId: string, telemetry: TelemetryMessage): void;
  commandResult(agentId: string, result: CommandResultMessage): void;
}

/** The bus's state for /readyz: embedded: listening; external: the broker connection. */
export interface FleetBusHealth {
  readonly state: 'stopped' | 'connecting' | 'connected' | 'disconnected' | 'listening';
  readonly message: string;
  /** ms since the epoch when this state began. */
  readonly since: number;
}

export interface FleetBus {
  /** The URL agents are told to connect to (enrollment answer), e.g. mqtt://host:1883. */
  readonly agentUrl: string;
  /** Starts delivering events to the handlers; resolves when subscribed (and, embedded, listening). */
  start(events: FleetBusEvents): Promise<void>;
  /** Publishes the agent's policy retained at QoS 1; resolves once the broker has it. */
  publishPolicy(agentId: string, message: PolicyMessage): Promise<void>;
  /** Publishes a command at QoS 1 (not retained); resolves once the broker has it. */
  publishCommand(agentId: string, command: CommandMessage): Promise<void>;
  /** Clears the agent's retained messages and drops its MQTT connection (revocation). */
  forgetAgent(agentId: string): Promise<void>;
  /** Agent ids with an open MQTT connection, when the broker can tell (embedded); undefined otherwise. */
  connectedAgents(): ReadonlySet<string> | undefined;
  /** Counters for /metrics: messages in and out, refused connections, refused publishes/subscribes. */
  counters(): Readonly<Record<string, number>>;
  /** A new agent was enrolled: an external broker's credentials (Mosquitto files) are brought up to date before its answer goes out. Optional. */
  agentEnrolled?(agentId: string): Promise<void>;
  /** Connection state for /readyz and logs (optional so test doubles need not implement it). */
  health?(): FleetBusHealth;
  close(): Promise<void>;
}
