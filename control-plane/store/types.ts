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

export type AgentVerification =
  | { readonly status: 'ok'; readonly agent: AgentRecord }
  | { readonly status: 'unknown_agent' | 'wrong_secret' | 'revoked' };

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

  /** Appends one entry to the audit log (never updated, never deleted). */
  audit(entry: AuditInput): Promise<AuditEntry>;
  /** Newest first, keyset-paged like listMessages. */
  listAudit(query: { readonly limit?: number; readonly cursor?: string }): Promise<AuditPage>;

  /** Waits for writes in flight, then closes. */
  close(): Promise<void>;
}
