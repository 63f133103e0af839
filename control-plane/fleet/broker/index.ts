// The brokers behind the fleet bus: the embedded aedes broker (default), an external broker over
// mqtt.js, and the files that make an external Mosquitto enforce the same per-agent rules.

export { agentAuthHooks, type AgentVerifier } from './agent-auth.js';
export { CONTROL_PLANE_FILTERS } from './bus-events.js';
export { EmbeddedFleetBus } from './embedded-bus.js';
export { ExternalFleetBus } from './external-bus.js';
export { compileBusOptions, withoutCredentials, DEFAULT_MAX_PACKET_BYTES, DEFAULT_MQTT_LISTEN, type EmbeddedBusOptions, type ExternalBusOptions, type FleetBusOptions, type MqttConfig } from './options.js';
export { MosquittoFiles, mosquittoAcl, mosquittoPasswords, type MosquittoFilesOptions } from './mosquitto-files.js';
export { PacketSizeScanner } from './packet-limit.js';
