// The control plane's message store: what agents deliver, sealed at rest, deduplicated on
// (agent id, buffer id, seq), plus the agents' credentials. `MessageStore` is the interface the
// rest of the control plane uses; `SqliteMessageStore` fills it (a PostgreSQL one will too).
// Design notes: README.md beside this file.

export {
  API_ROLES,
  DEFAULT_PAGE_SIZE,
  DEFAULT_POLICY_ID,
  MAX_PAGE_SIZE,
  type AgentStatusRecord,
  type BacklogSample,
  type CommandPage,
  type CommandRecord,
  type CommandStatus,
  type NewCommandInput,
  type NewPolicyInput,
  type PolicyRecord,
  type PolicyUpdateInput,
  type PolicyUpdateResult,
  type PolicyVersionRecord,
  type AgentBufferStats,
  type AgentRecord,
  type ApiRole,
  type ApiTokenIdentity,
  type AuditEntry,
  type AuditInput,
  type AuditPage,
  type EnrollmentTokenCheck,
  type EnrollmentTokenRecord,
  type IssuedApiToken,
  type IssuedEnrollmentToken,
  type NewEnrollmentTokenInput,
  type AgentVerification,
  type BrokerCredential,
  type IncomingEnvelope,
  type IngestResult,
  type MessageMetadata,
  type MessagePage,
  type MessageQuery,
  type MessageStore,
  type MessageSummary,
  type NewAgent,
} from './types.js';
export { StoreKeyring } from './keyring.js';
export { SqliteMessageStore, STORE_FILE, STORE_KEY_FILE, type SqliteStoreOptions } from './sqlite/store.js';
export { POLICY_ID_PATTERN } from './sqlite/fleet.js';
export { mosquittoPasswordHash } from './agent-secrets.js';
