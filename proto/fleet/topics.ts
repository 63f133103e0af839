// MQTT topic names of the fleet bus (DESIGN.md): everything about one agent lives under
// ferry/v1/agents/{agent_id}/, and an agent may publish and subscribe only there.

export const FLEET_TOPIC_ROOT = 'ferry/v1/agents';

/** Who publishes each topic: cp = control plane, agent = the agent itself. */
export const AGENT_TOPICS = {
  /** Retained; cp → agent: the agent's current policy (PolicyMessage). */
  policy: 'policy',
  /** QoS 1; cp → agent: CommandMessage. */
  commands: 'commands',
  /** QoS 1; agent → cp: CommandResultMessage. */
  commandResults: 'command-results',
  /** Retained, also the last will; agent → cp: StatusMessage. */
  status: 'status',
  /** agent → cp: TelemetryMessage. */
  telemetry: 'telemetry',
} as const;

export type AgentTopicKind = (typeof AGENT_TOPICS)[keyof typeof AGENT_TOPICS];

const KINDS = new Set<string>(Object.values(AGENT_TOPICS));

/** The prefix an agent's own topics share (with trailing slash). */
export function agentTopicPrefix(agentId: string): string {
  return `${FLEET_TOPIC_ROOT}/${agentId}/`;
}

export function agentTopic(agentId: string, kind: AgentTopicKind): string {
  return `${FLEET_TOPIC_ROOT}/${agentId}/${kind}`;
}

/** Subscription filter for one kind of topic across every agent (control plane side). */
export function allAgentsFilter(kind: AgentTopicKind): string {
  return `${FLEET_TOPIC_ROOT}/+/${kind}`;
}

/** Splits ferry/v1/agents/{id}/{kind}; undefined for any other topic. */
export function parseAgentTopic(topic: string): { agentId: string; kind: AgentTopicKind } | undefined {
  if (!topic.startsWith(`${FLEET_TOPIC_ROOT}/`)) return undefined;
  const rest = topic.slice(FLEET_TOPIC_ROOT.length + 1).split('/');
  if (rest.length !== 2) return undefined;
  const [agentId, kind] = rest as [string, string];
  if (agentId === '' || agentId.includes('+') || agentId.includes('#') || !KINDS.has(kind)) return undefined;
  return { agentId, kind: kind as AgentTopicKind };
}

/**
 * The broker-side rule, one function for every broker Ferry runs or configures: an agent may use
 * a topic (or filter) only when it lies under its own prefix and holds no wildcard and no `$`.
 */
export function agentMayUseTopic(agentId: string, topic: string): boolean {
  if (topic.includes('+') || topic.includes('#') || topic.startsWith('$')) return false;
  const prefix = agentTopicPrefix(agentId);
  return topic.startsWith(prefix) && topic.length > prefix.length;
}

/** Topics an agent publishes on (its own prefix only); everything else under its prefix it only reads. */
const AGENT_PUBLISHES = new Set<string>([AGENT_TOPICS.status, AGENT_TOPICS.telemetry, AGENT_TOPICS.commandResults]);
/** Topics an agent subscribes to: what the control plane sends it. */
const AGENT_SUBSCRIBES = new Set<string>([AGENT_TOPICS.policy, AGENT_TOPICS.commands]);

/**
 * agentMayUseTopic plus direction: an agent publishes only status, telemetry and command-results
 * (so it can never forge its own policy or commands), and subscribes only to policy and commands.
 */
export function agentMayPublish(agentId: string, topic: string): boolean {
  return agentMayUseTopic(agentId, topic) && AGENT_PUBLISHES.has(topic.slice(agentTopicPrefix(agentId).length));
}

export function agentMaySubscribe(agentId: string, filter: string): boolean {
  return agentMayUseTopic(agentId, filter) && AGENT_SUBSCRIBES.has(filter.slice(agentTopicPrefix(agentId).length));
}
