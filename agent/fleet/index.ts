// The fleet client: the agent's side of the MQTT fleet bus (DESIGN.md, proto/fleet). It keeps the
// connection (last will, heartbeat status, telemetry), validates and merges policies over the local
// file and caches the applied one, and runs commands at most once each. Live apply itself is the
// agent's (agent.ts with sources/source-set.ts).

export { FleetClient, redactUrl, type FleetClientOptions, type FleetConnectionStatus, type FleetHandlers, type StatusBody } from './client.js';
export { CommandLedger, COMMAND_LEDGER_FILE } from './command-ledger.js';
export { CommandRunner, type CommandAnswer, type CommandHandlers } from './commands.js';
export { keysNeedingRestart, mergePolicy } from './merge.js';
export { POLICY_CACHE_FILE, policyCachePath, readPolicyCache, writePolicyCache, type PolicyCache } from './policy-cache.js';
export { NO_POLICY, PolicyApplier, type PolicyApplierDeps, type PolicyApplyState } from './policy-applier.js';
export { fleetStatusBody, numericCounters, telemetryCounters, type AgentSnapshot } from './status.js';
