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
