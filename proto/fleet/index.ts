// The MQTT fleet bus contract: topic names, the per-agent topic rule, and every payload schema.

export { AGENT_TOPICS, FLEET_TOPIC_ROOT, agentMayPublish, agentMaySubscribe, agentMayUseTopic, agentTopic, agentTopicPrefix, allAgentsFilter, parseAgentTopic, type AgentTopicKind } from './topics.js';
export {
  COMMAND_STATUSES,
  COMMAND_TYPES,
  commandArgsSchemas,
  commandMessageSchema,
  commandResultMessageSchema,
  commandTypeSchema,
  policyApplySchema,
  policyMessageSchema,
  sourceStatusSchema,
  statusMessageSchema,
  telemetryMessageSchema,
  type CommandMessage,
  type CommandResultMessage,
  type CommandType,
  type PolicyMessage,
  type PolicyMessageInput,
  type StatusMessage,
  type TelemetryMessage,
} from './messages.js';
