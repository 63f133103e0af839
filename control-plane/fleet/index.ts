// The control plane's MQTT fleet bus: the FleetBus interface the fleet service talks to, and
// createFleetBus, which builds the embedded broker (default) or the external-broker client from
// the config's `mqtt` section.

import type { Logger } from '../log.js';
import type { MessageStore } from '../store/index.js';
import { EmbeddedFleetBus, ExternalFleetBus, MosquittoFiles, compileBusOptions, type MqttConfig } from './broker/index.js';
import type { FleetBus } from './bus.js';

export type { FleetBus, FleetBusEvents, FleetBusHealth } from './bus.js';
export { EmbeddedFleetBus, ExternalFleetBus, MosquittoFiles, compileBusOptions, mosquittoAcl, type MqttConfig } from './broker/index.js';
// The fleet service (policies, presence and health, commands).
export { FleetService, type AgentFleetState, type FleetControl, type FleetGauges, type FleetServiceOptions, type PolicyRollout } from './service.js';
export { DEFAULT_HEALTH_OPTIONS, type AgentHealth, type HealthOptions } from './health.js';

export interface FleetBusDeps {
  /** Checks agent credentials (embedded broker); lists them for Mosquitto's password file (external). */
  readonly store: Pick<MessageStore, 'verifyAgentSecret' | 'listBrokerCredentials'>;
  readonly log: Logger;
}

export function createFleetBus(config: MqttConfig, deps: FleetBusDeps): FleetBus & { address?(): { host: string; port: number } | undefined } {
  const options = compileBusOptions(config);
  if (options.kind === 'embedded') return new EmbeddedFleetBus(options, deps);
  const m = options.mosquitto;
  const mosquittoFiles =
    m && options.username !== undefined && options.passwordFile !== undefined
      ? new MosquittoFiles(
          { passwordFile: m.passwordFile, aclFile: m.aclFile, pidFile: m.pidFile, controlPlaneUser: options.username, controlPlanePasswordFile: options.passwordFile },
          { store: deps.store, log: deps.log },
        )
      : undefined;
  return new ExternalFleetBus(options, { log: deps.log, mosquittoFiles });
}

/**
 * The MQTT URL an agent is told at enrollment: advertise_url when set; for the embedded broker
 * without one, the host the agent used to reach the HTTP API with the broker's port (like the
 * gRPC target); for an external broker, its URL without credentials.
 */
export function agentMqttUrl(bus: FleetBus, config: MqttConfig, requestHostname: string): string {
  if (config.advertise_url !== undefined || config.url !== undefined) return bus.agentUrl;
  const url = new URL(bus.agentUrl);
  url.hostname = requestHostname;
  return url.toString().replace(/\/$/, '');
}
