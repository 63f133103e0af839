// What the control plane needs from its store. SQLite implements it now (sqlite/); a PostgreSQL
// implementation fills the same interface for deployments with several control-plane replicas.

/** Header fields the agent read from MSH; shown in listings (the payload itself is sealed). */
export interface MessageMetadata {
  readonly messageType: string;
  readonly triggerEvent: string;
  readonly controlId: string;
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly version: string;
}

/** One message as an agent delivers it (an Envelope off the wire, decoded). */
export interface IncomingEnvelope {
  /** Per-buffer sequence number, a positive safe integer. */
  readonly seq: number;
  readonly sourceId: string;
  /** Milliseconds since the epoch, when the agent received it. */
  readonly receivedAtMs: number;
  readonly payload: Buffer;
  /** sha256 of payload as the agent computed it; verified before anything is stored. */
  readonly sha256: Buffer;
  readonly metadata: MessageMetadata;
}

export interface IngestResult {
  /** Every envelope of this (agent, buffer) with seq <= committedSeq is durably stored. */
  readonly committedSeq: number;
  /** Envelopes of the batch written now. */
  readonly stored: number;
  /** Envelopes of the batch already stored before (resends), ignored. */
  readonly duplicates: number;
}

export interface MessageQuery {
  readonly agent?: string;
  readonly source?: string;
  /** `ADT` matches the message type; `ADT^A01` matches type and trigger event. */
  readonly type?: string;
  readonly controlId?: string;
  /** Received at or after (ms since the epoch). */
  readonly since?: number;
  /** Received before (ms since the epoch). */
  readonly until?: number;
  /** 1..MAX_PAGE_SIZE; default DEFAULT_PAGE_SIZE. */
  readonly limit?: number;
  /** next_cursor of the previous page; opaque. */
  readonly cursor?: string;
  /** Store order: `asc` oldest first (default), `desc` newest first. A cursor keeps its page's order. */
  readonly order?: 'asc' | 'desc';
}

/** A stored message without its payload. */
export interface MessageSummary {
  /** The store's own id (decimal string; opaque to clients). */
  readonly id: string;
  readonly agentId: string;
  readonly bufferId: string;
  readonly sourceId: string;
  readonly seq: number;
  readonly receivedAt: number;
  readonly storedAt: number;
  readonly messageType: string;
  readonly triggerEvent: string;
  readonly controlId: string;
  readonly sendingApplication: string;
  readonly sendingFacility: string;
  readonly version: string;
  readonly size: number;
  /** Hex. */
  readonly sha256: string;
}

export interface MessagePage {
  readonly items: readonly MessageSummary[];
  /** Pass as `cursor` for the next page; null when this page is the last. */
  readonly nextCursor: string | null;
}

export interface AgentRecord {
  readonly id: string;
  readonly name: string;
  readonly policyId: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
  /** Last time the agent was heard from (a commit or a status), ms since the epoch; null if never. */
  readonly lastSeen: number | null;
}

/** Delivery totals of one (agent, buffer), kept in the same transaction as the batch's rows. */
export interface AgentBufferStats {
  readonly agentId: string;
  readonly bufferId: string;
  readonly committedSeq: number;
  readonly messages: number;
  readonly bytes: number;
  readonly firstCommitAt: number;
  readonly lastCommitAt: number;
}

export type ApiRole = 'admin' | 'operator' | 'viewer';
export const API_ROLES: readonly ApiRole[] = ['viewer', 'operator', 'admin'];

export interface NewEnrollmentTokenInput {
  /** Default 'default'. */
  readonly policyId?: string;
  /** Default 24 h. */
  readonly expiresInSecs?: number;
  /** Default 1. */
  readonly maxUses?: number;
  /** Who made it (an API token id), for the record. */
  readonly createdBy: string;
}

export interface EnrollmentTokenRecord {
  readonly id: string;
  readonly policyId: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly maxUses: number;
  readonly uses: number;
  readonly revokedAt: number | null;
  readonly createdBy: string;
}

export interface IssuedEnrollmentToken extends EnrollmentTokenRecord {
  /** Shown once; only its hash is kept. */
  readonly token: string;
}

export type EnrollmentTokenCheck =
  | { readonly status: 'ok'; readonly tokenId: string; readonly policyId: string }
  | { readonly status: 'unknown' | 'expired' | 'used_up' | 'revoked' };

export interface IssuedApiToken {
  readonly id: string;
  readonly name: string;
  readonly role: ApiRole;
  /** Shown once; only its hash is kept. */
  readonly token: string;
}

export interface ApiTokenIdentity {
  readonly tokenId: string;
  readonly name: string;
  readonly role: ApiRole;
}

export interface AuditInput {
  /** Who: an API token id (`token:<id>`), an agent (`agent:<id>`), or `system`. */
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  /** Small JSON facts; never message content, tokens or secrets. */
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface AuditEntry {
  readonly id: string;
  /** ms since the epoch */
  readonly at: number;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: Readonly<Record<string, unknown>>;
}

export interface AuditPage {
  readonly items: readonly AuditEntry[];
  readonly nextCursor: string | null;
}

export interface NewAgent {
  readonly id: string;
  /** Shown once; only a hash is kept. */
  readonly secret: string;
}

/** An agent's MQTT credential as an external broker's password file holds it. */
export interface BrokerCredential {
  readonly agentId: string;
  /** `$7$101$salt$hash` (mosquitto_passwd's PBKDF2-SHA512 format). */
  readonly mosquittoHash: string;
}

export type AgentVerification =
  | { readonly status: 'ok'; readonly agent: AgentRecord }
  | { readonly status: 'unknown_agent' | 'wrong_secret' | 'revoked' };

/** A fleet policy (its documents are the versions). */
export interface PolicyRecord {
  readonly id: string;
  readonly name: string;
  readonly latestVersion: number;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly updatedAt: number;
}

/** One version of a policy: the document as the admin wrote it (validated before it was stored). */
export interface PolicyVersionRecord {
  readonly policyId: string;
  readonly version: number;
  readonly config: Readonly<Record<string, unknown>>;
  readonly createdBy: string;
  readonly createdAt: number;
}

export interface NewPolicyInput {
  /** Default: a random UUID. */
  readonly id?: string;
  readonly name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly createdBy: string;
}

export interface PolicyUpdateInput {
  /** A new document; a new version is made only when it differs from the latest. */
  readonly config?: Readonly<Record<string, unknown>>;
  readonly name?: string;
  readonly updatedBy: string;
}

export interface PolicyUpdateResult {
  readonly previous: PolicyVersionRecord;
  /** The latest version after the update (the same as previous when the document did not change). */
  readonly current: PolicyVersionRecord;
  readonly policy: PolicyRecord;
  readonly previousName: string;
}

/** A backlog reading kept to tell whether an agent's backlog keeps growing. */
export interface BacklogSample {
  readonly at: number;
  readonly depth: number;
  readonly bytes: number;
}

/** The latest status an agent published, as the control plane keeps it. */
export interface AgentStatusRecord {
  readonly agentId: string;
  /** The StatusMessage as received (validated by the bus). */
  readonly status: Readonly<Record<string, unknown>>;
  /** ms since the epoch, when the control plane received it. */
  readonly receivedAt: number;
  /** false after the last will, a clean shutdown, or a late heartbeat. */
  readonly online: boolean;
  readonly appliedPolicyVersion: number | null;
  /** Oldest first, a few at most. */
  readonly backlogSamples: readonly BacklogSample[];
}

export type CommandStatus = 'pending' | 'succeeded' | 'failed' | 'expired';

export interface CommandRecord {
  readonly id: string;
  readonly agentId: string;
  readonly type: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly issuedBy: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly status: CommandStatus;
  /** What the agent answered ({result?, error?}); null while pending or when it expired unanswered. */
  readonly result: Readonly<Record<string, unknown>> | null;
  readonly finishedAt: number | null;
}

export interface NewCommandInput {
  readonly agentId: string;
  readonly type: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly issuedBy: string;
  readonly expiresInSecs: number;
}

export interface CommandPage {
  readonly items: readonly CommandRecord[];
  readonly nextCursor: string | null;
}

/** The id of the policy every store has from its first start (it sets nothing). */
export const DEFAULT_POLICY_ID = 'default';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface MessageStore {
  /**
   * Commits the envelopes of one batch not yet stored for (agent, buffer), all in one transaction,
   * and resolves after the commit is durable. Envelopes with seq <= the committed seq are resends
   * and ignored. Before writing anything, every envelope is checked: seqs strictly increasing
   * (`batch_invalid`), each payload's sha256 matching (`payload_hash_mismatch`); one failure
   * rejects the whole batch and nothing of it is stored.
   */
  ingestBatch(agentId: string, bufferId: string, envelopes: readonly IncomingEnvelope[]): Promise<IngestResult>;
  /** The highest seq committed for (agent, buffer); 0 when none. */
  committedSeq(agentId: string, bufferId: string): Promise<number>;
  /** Metadata only, keyset-paged on the store's id. */
  listMessages(query: MessageQuery): Promise<MessagePage>;
  /** The exact bytes received, or undefined for an unknown id. */
  getPayload(id: string): Promise<Buffer | undefined>;

  createAgent(input: { readonly name: string; readonly policyId: string }): Promise<NewAgent>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  /** Constant-time check of an agent's secret; says why a refusal happened (for logs, not for the peer). */
  verifyAgentSecret(id: string, secret: string): Promise<AgentVerification>;
  /** Revokes the agent's credentials; false when there is no such agent. */
  revokeAgent(id: string): Promise<boolean>;
  /** Every non-revoked agent's secret in Mosquitto's password-file form (for an external Mosquitto). */
  listBrokerCredentials(): Promise<BrokerCredential[]>;
  /** Every agent, oldest first. */
  listAgents(): Promise<AgentRecord[]>;
  /** Records that the agent was heard from (kept as the latest time seen). */
  markAgentSeen(id: string, atMs: number): Promise<void>;
  /** Per-buffer delivery totals, of one agent or of all. */
  bufferStats(agentId?: string): Promise<AgentBufferStats[]>;

  createEnrollmentToken(input: NewEnrollmentTokenInput): Promise<IssuedEnrollmentToken>;
  /** Marks the token revoked; false when there is no such token. Revoking twice is fine. */
  revokeEnrollmentToken(id: string): Promise<boolean>;
  /** Atomically checks the token and counts one use if it is usable; says why it is not. */
  consumeEnrollmentToken(token: string): Promise<EnrollmentTokenCheck>;

  createApiToken(input: { readonly name: string; readonly role: ApiRole }): Promise<IssuedApiToken>;
  /** Revokes an API token (idempotent); false when no token has this id. */
  revokeApiToken(id: string): Promise<boolean>;
  /** The token's identity, or undefined for an unknown or revoked token. */
  verifyApiToken(token: string): Promise<ApiTokenIdentity | undefined>;
  countApiTokens(): Promise<number>;

  /** Makes a policy with version 1; `policy_exists` when the id is taken. */
  createPolicy(input: NewPolicyInput): Promise<{ readonly policy: PolicyRecord; readonly version: PolicyVersionRecord }>;
  /** Makes the next version (when the document changed) and/or renames; undefined for an unknown policy. */
  updatePolicy(id: string, input: PolicyUpdateInput): Promise<PolicyUpdateResult | undefined>;
  getPolicy(id: string): Promise<PolicyRecord | undefined>;
  /** Every policy, oldest first. */
  listPolicies(): Promise<PolicyRecord[]>;
  /** One version, or the latest when version is omitted. */
  getPolicyVersion(id: string, version?: number): Promise<PolicyVersionRecord | undefined>;
  /** Moves the agent to another policy; the previous policy id, or undefined for an unknown agent. */
  setAgentPolicy(agentId: string, policyId: string): Promise<string | undefined>;

  /** Upserts the latest status of several agents in one transaction. */
  saveAgentStatuses(records: readonly AgentStatusRecord[]): Promise<void>;
  listAgentStatuses(): Promise<AgentStatusRecord[]>;

  createCommand(input: NewCommandInput): Promise<CommandRecord>;
  /**
   * Records the agent's answer. Only a pending command, or one the sweep expired without an answer,
   * takes it (a redelivered result changes nothing); undefined when nothing changed.
   */
  finishCommand(agentId: string, id: string, outcome: { readonly status: Exclude<CommandStatus, 'pending'>; readonly result: Readonly<Record<string, unknown>> }): Promise<CommandRecord | undefined>;
  getCommand(agentId: string, id: string): Promise<CommandRecord | undefined>;
  /** Newest first, keyset-paged. */
  listCommands(agentId: string, query: { readonly limit?: number; readonly cursor?: string }): Promise<CommandPage>;
  /** Marks pending commands whose expires_at has passed as expired; returns them. */
  expireCommands(nowMs: number): Promise<CommandRecord[]>;
  countCommandsByStatus(): Promise<Record<CommandStatus, number>>;

  /** Appends one entry to the audit log (never updated, never deleted). */
  audit(entry: AuditInput): Promise<AuditEntry>;
  /** Newest first, keyset-paged like listMessages. */
  listAudit(query: { readonly limit?: number; readonly cursor?: string }): Promise<AuditPage>;

  /** Waits for writes in flight, then closes. */
  close(): Promise<void>;
}
