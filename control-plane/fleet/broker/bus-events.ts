// What both buses do with a message an agent published: find the agent and kind from the topic,
// parse the payload with the proto/fleet schema, and hand it to the events handler. A payload that
// does not parse is dropped and counted; it never reaches the service and never crashes the bus.

import type { Logger } from '../../log.js';
import { AGENT_TOPICS, allAgentsFilter, commandResultMessageSchema, parseAgentTopic, statusMessageSchema, telemetryMessageSchema } from '../../../proto/fleet/index.js';
import type { FleetBusEvents } from '../bus.js';

/** The filters the control plane subscribes to (every agent's agent → control plane topics). */
export const CONTROL_PLANE_FILTERS: readonly string[] = [allAgentsFilter(AGENT_TOPICS.status), allAgentsFilter(AGENT_TOPICS.telemetry), allAgentsFilter(AGENT_TOPICS.commandResults)];

export class BusCounters {
  readonly values: Record<string, number> = {
    messages_in: 0,
    messages_out: 0,
    messages_invalid: 0,
    connections_accepted: 0,
    connections_refused: 0,
    publishes_refused: 0,
    subscribes_refused: 0,
    packets_too_large: 0,
    reconnects: 0,
  };

  add(name: string, n = 1): void {
    this.values[name] = (this.values[name] ?? 0) + n;
  }
}

/** Delivers one inbound message; returns false (and counts it) when it was not a valid fleet message. */
export function dispatchAgentMessage(topic: string, payload: Buffer, events: FleetBusEvents, counters: BusCounters, log: Logger): boolean {
  const parsed = parseAgentTopic(topic);
  // An empty payload clears a retained message (revocation, or an agent tidying up): nothing to deliver.
  if (!parsed || payload.length === 0) return false;
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return invalid(parsed.agentId, parsed.kind, 'not JSON', counters, log);
  }
  counters.add('messages_in');
  try {
    switch (parsed.kind) {
      case AGENT_TOPICS.status: {
        const r = statusMessageSchema.safeParse(json);
        if (!r.success) return invalid(parsed.agentId, parsed.kind, r.error.issues[0]?.message ?? 'schema', counters, log);
        // The topic is the authority on who sent it (the broker enforced it); a body naming another agent is forged or broken.
        if (r.data.agent_id !== parsed.agentId) return invalid(parsed.agentId, parsed.kind, 'agent_id does not match the topic', counters, log);
        events.status(parsed.agentId, r.data);
        return true;
      }
      case AGENT_TOPICS.telemetry: {
        const r = telemetryMessageSchema.safeParse(json);
        if (!r.success) return invalid(parsed.agentId, parsed.kind, r.error.issues[0]?.message ?? 'schema', counters, log);
        if (r.data.agent_id !== parsed.agentId) return invalid(parsed.agentId, parsed.kind, 'agent_id does not match the topic', counters, log);
        events.telemetry(parsed.agentId, r.data);
        return true;
      }
      case AGENT_TOPICS.commandResults: {
        const r = commandResultMessageSchema.safeParse(json);
        if (!r.success) return invalid(parsed.agentId, parsed.kind, r.error.issues[0]?.message ?? 'schema', counters, log);
        events.commandResult(parsed.agentId, r.data);
        return true;
      }
      default:
        return false;
    }
  } catch (err) {
    // The handler's own failure: log it and keep the bus running for every other agent.
    log.error({ component: 'fleet', agent_id: parsed.agentId, topic_kind: parsed.kind, err: { message: (err as Error).message } }, 'the fleet service failed to handle a message');
    return false;
  }
}

function invalid(agentId: string, kind: string, reason: string, counters: BusCounters, log: Logger): false {
  counters.add('messages_invalid');
  log.warn({ component: 'fleet', agent_id: agentId, topic_kind: kind, reason }, 'dropped an agent message that does not match its schema');
  return false;
}
