// The MessageStore on SQLite: one file in the data directory, WAL, synchronous=FULL, payloads
// sealed with AES-256-GCM. Design notes: ../README.md.
//
// Writes go through one connection, strictly one at a time (a promise queue): the sqlite3 driver
// runs a connection's statements in order, so two interleaved transactions on it would mix. Reads
// (listings, payloads, credential checks) use a second, read-only connection: they never see an
// open transaction and never wait behind a commit.

import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type sqlite3 from 'sqlite3';
import { ControlPlaneError } from '../../errors.js';
import { NO_AGENT_HASH, hashAgentSecret, mosquittoPasswordHash, newAgentSecret, secretMatches } from '../agent-secrets.js';
import { checkBatch, checkIds } from '../batch-check.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import { StoreKeyring, payloadAad } from '../keyring.js';
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  type AgentBufferStats,
  type AgentRecord,
  type AgentStatusRecord,
  type CommandPage,
  type CommandRecord,
  type CommandStatus,
  type NewCommandInput,
  type NewPolicyInput,
  type PolicyRecord,
  type PolicyUpdateInput,
  type PolicyUpdateResult,
  type PolicyVersionRecord,
  type ApiRole,
  type ApiTokenIdentity,
  type AuditEntry,
  type AuditInput,
  type AuditPage,
  type EnrollmentTokenCheck,
  type IssuedApiToken,
  type IssuedEnrollmentToken,
  type NewEnrollmentTokenInput,
  type AgentVerification,
  type IncomingEnvelope,
  type IngestResult,
  type MessagePage,
  type MessageQuery,
  type MessageStore,
  type MessageSummary,
  type NewAgent,
  type BrokerCredential,
} from '../types.js';
import * as admin from './admin.js';
import * as fleet from './fleet.js';
import { INSERT_COLUMNS, MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION, SUMMARY_COLUMNS } from './schema.js';
import { all, close, exec, finalize, get, getStatement, openDatabase, prepare, run, runStatement, type SqlValue } from './sqlite.js';

export interface SqliteStoreOptions {
  /** Holds store.db (and its -wal, -shm) and, unless keyFile says otherwise, store-keys.json. */
  readonly dataDir: string;
  readonly keyFile?: string;
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number;
}

export const STORE_FILE = 'store.db';
export const STORE_KEY_FILE = 'store-keys.json';

/**
 * A whole batch (the Welcome's 512 messages) in one statement: every statement is a round trip to
 * SQLite's thread that waits behind the main thread's decoding and sealing of the next batches.
 * 4 + 512 x 12 values stays far under SQLite's 32,766 bound variables.
 */
const MAX_ROWS_PER_STATEMENT = 512;
/** Values bound once per INSERT (agent, buffer, stored_at, key) and per row (see insertChunk). */
const SHARED_PARAMS = 4;
const ROW_PARAMS = 12;

export class SqliteMessageStore implements MessageStore {
  private closed = false;
  private writeTail: Promise<unknown> = Promise.resolve();
  private readonly insertStatements = new Map<number, sqlite3.Statement>();
  private readonly statements = new Map<string, sqlite3.Statement>();
  /**
   * Committed seq per (agent, buffer), as of the last commit this process made: ingestBatch is the
   * only writer of agent_buffers, so after the first read the table need not be asked again.
   */
  private readonly committedCache = new Map<string, number>();
  private readonly admin: admin.AdminContext;

  private constructor(
    private readonly writer: sqlite3.Database,
    private readonly reader: sqlite3.Database,
    private readonly keyring: StoreKeyring,
    private readonly now: () => number,
    readonly path: string,
  ) {
    this.admin = { writer, reader, now, serializeWrite: (op) => this.serializeWrite(op) };
  }

  static async open(options: SqliteStoreOptions): Promise<SqliteMessageStore> {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    const keyring = StoreKeyring.loadOrCreate(options.keyFile ?? join(options.dataDir, STORE_KEY_FILE));
    const path = join(options.dataDir, STORE_FILE);
    // Create the file owner-only before SQLite does; its -wal and -shm files take the same mode.
    closeSync(openSync(path, 'a', 0o600));
    const writer = await openDatabase(path);
    try {
      await exec(writer, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864; PRAGMA busy_timeout = 5000;');
      const mode = await get<{ journal_mode: string }>(writer, 'PRAGMA journal_mode');
      if (mode?.journal_mode !== 'wal') throw new ControlPlaneError('store_io', `store ${path} could not switch to WAL mode`);
      await exec(writer, SCHEMA_SQL);
      await run(writer, "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?), ('schema_version', ?), ('created_at', ?)", [
        randomUUID(),
        String(SCHEMA_VERSION),
        new Date().toISOString(),
      ]);
      await migrate(writer);
      const version = await get<{ value: string }>(writer, "SELECT value FROM meta WHERE key = 'schema_version'");
      if (version?.value !== String(SCHEMA_VERSION)) {
        throw new ControlPlaneError('store_io', `store ${path} has schema version ${version?.value ?? '(none)'}; this control plane reads version ${SCHEMA_VERSION}`);
      }
      const reader = await openDatabase(path, true);
      await exec(reader, 'PRAGMA busy_timeout = 5000;');
      const store = new SqliteMessageStore(writer, reader, keyring, options.now ?? Date.now, path);
      await fleet.ensureDefaultPolicy(store.admin);
      return store;
    } catch (err) {
      await close(writer).catch(() => {});
      throw err;
    }
  }

  async ingestBatch(agentId: string, bufferId: string, envelopes: readonly IncomingEnvelope[]): Promise<IngestResult> {
    this.assertOpen();
    checkIds(agentId, bufferId);
    checkBatch(envelopes);
    // Sealed before taking the write turn, so this CPU work overlaps the commit in flight. The key
    // id is fixed per batch: the AAD names it.
    const keyId = this.keyring.activeKeyId;
    const sealed = envelopes.map((e) => this.keyring.seal(e.payload, payloadAad(agentId, bufferId, e.seq, keyId)));
    return this.serializeWrite(async () => {
      const committed = await this.readCommitted(agentId, bufferId);
      // Seqs are strictly increasing, so the resent part of a batch is a prefix.
      let first = 0;
      while (first < envelopes.length && envelopes[first]!.seq <= committed) first++;
      if (first === envelopes.length) return { committedSeq: committed, stored: 0, duplicates: envelopes.length };
      const storedAt = this.now();
      let stored = 0;
      let bytes = 0;
      await run(this.writer, 'BEGIN IMMEDIATE');
      try {
        let offset = first;
        while (offset < envelopes.length) {
          const count = Math.min(MAX_ROWS_PER_STATEMENT, previousPowerOfTwo(envelopes.length - offset));
          stored += await this.insertChunk(agentId, bufferId, keyId, storedAt, envelopes, sealed, offset, count);
          offset += count;
        }
        for (let i = first; i < envelopes.length; i++) bytes += envelopes[i]!.payload.length;
        const top = envelopes[envelopes.length - 1]!.seq;
        await runStatement(
          await this.statement(
            `INSERT INTO agent_buffers (agent_id, buffer_id, committed_seq, messages, bytes, first_commit_at, last_commit_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (agent_id, buffer_id) DO UPDATE SET committed_seq = MAX(committed_seq, excluded.committed_seq),
               messages = messages + excluded.messages, bytes = bytes + excluded.bytes, last_commit_at = excluded.last_commit_at`,
          ),
          [agentId, bufferId, top, stored, bytes, storedAt, storedAt],
        );
        await run(this.writer, 'COMMIT');
        this.committedCache.set(committedKey(agentId, bufferId), Math.max(committed, top));
        return { committedSeq: Math.max(committed, top), stored, duplicates: envelopes.length - stored };
      } catch (err) {
        await run(this.writer, 'ROLLBACK').catch(() => {});
        throw new ControlPlaneError('store_io', 'store commit failed; nothing of the batch was stored', { cause: err });
      }
    });
  }

  async committedSeq(agentId: string, bufferId: string): Promise<number> {
    this.assertOpen();
    const row = await get<{ committed_seq: number }>(this.reader, 'SELECT committed_seq FROM agent_buffers WHERE agent_id = ? AND buffer_id = ?', [agentId, bufferId]);
    return row?.committed_seq ?? 0;
  }

  async listMessages(query: MessageQuery): Promise<MessagePage> {
    this.assertOpen();
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) throw new ControlPlaneError('query_invalid', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (cursor && query.order && cursor.order !== query.order) throw new ControlPlaneError('query_invalid', 'order differs from the order the cursor was issued for');
    const order = cursor?.order ?? query.order ?? 'asc';
    const where: string[] = [];
    const params: SqlValue[] = [];
    const add = (clause: string, ...values: SqlValue[]): void => {
      where.push(clause);
      params.push(...values);
    };
    if (query.agent !== undefined) add('agent_id = ?', query.agent);
    if (query.source !== undefined) add('source_id = ?', query.source);
    if (query.type !== undefined) {
      const [type, trigger] = query.type.split('^', 2);
      add('message_type = ?', type ?? '');
      if (trigger !== undefined) add('trigger_event = ?', trigger);
    }
    if (query.controlId !== undefined) add('control_id = ?', query.controlId);
    for (const [name, value] of [['since', query.since], ['until', query.until]] as const) {
      if (value !== undefined && !Number.isSafeInteger(value)) throw new ControlPlaneError('query_invalid', `${name} must be milliseconds since the epoch`);
    }
    if (query.since !== undefined) add('received_at >= ?', query.since);
    if (query.until !== undefined) add('received_at < ?', query.until);
    if (cursor) add(order === 'asc' ? 'id > ?' : 'id < ?', cursor.afterId);
    const rows = await all<Record<string, SqlValue>>(
      this.reader,
      `SELECT ${SUMMARY_COLUMNS} FROM messages ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`,
      [...params, limit + 1],
    );
    const items = rows.slice(0, limit).map(toSummary);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor({ order, afterId: Number(last.id) }) : null };
  }

  async getPayload(id: string): Promise<Buffer | undefined> {
    this.assertOpen();
    if (!/^\d{1,16}$/.test(id)) return undefined;
    const row = await get<{ agent_id: string; buffer_id: string; seq: number; key_id: string; payload: Buffer; sha256: Buffer }>(
      this.reader,
      'SELECT agent_id, buffer_id, seq, key_id, payload, sha256 FROM messages WHERE id = ?',
      [Number(id)],
    );
    if (!row) return undefined;
    return this.keyring.open(row.key_id, row.payload, payloadAad(row.agent_id, row.buffer_id, row.seq, row.key_id));
  }

  async createAgent(input: { readonly name: string; readonly policyId: string }): Promise<NewAgent> {
    this.assertOpen();
    const id = randomUUID();
    const secret = newAgentSecret();
    const { salt, hash } = hashAgentSecret(secret);
    const brokerHash = mosquittoPasswordHash(secret);
    await this.serializeWrite(async () => {
      await run(this.writer, 'BEGIN IMMEDIATE');
      try {
        await run(this.writer, 'INSERT INTO agents (id, name, policy_id, secret_salt, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)', [id, input.name, input.policyId, salt, hash, this.now()]);
        await run(this.writer, 'INSERT INTO agent_broker_credentials (agent_id, mosquitto_hash) VALUES (?, ?)', [id, brokerHash]);
        await run(this.writer, 'COMMIT');
      } catch (err) {
        await run(this.writer, 'ROLLBACK').catch(() => {});
        throw err;
      }
    });
    return { id, secret };
  }

  async getAgent(id: string): Promise<AgentRecord | undefined> {
    this.assertOpen();
    const row = await get<AgentRow>(this.reader, `SELECT ${AGENT_COLUMNS} FROM agents WHERE id = ?`, [id]);
    return row ? toAgent(row) : undefined;
  }

  async verifyAgentSecret(id: string, secret: string): Promise<AgentVerification> {
    this.assertOpen();
    const row = await get<AgentRow>(this.reader, `SELECT ${AGENT_COLUMNS} FROM agents WHERE id = ?`, [id]);
    const matches = secretMatches(secret, row ? { salt: row.secret_salt, hash: row.secret_hash } : NO_AGENT_HASH);
    if (!row) return { status: 'unknown_agent' };
    if (!matches) return { status: 'wrong_secret' };
    if (row.revoked_at !== null) return { status: 'revoked' };
    return { status: 'ok', agent: toAgent(row) };
  }

  async revokeAgent(id: string): Promise<boolean> {
    this.assertOpen();
    const now = this.now();
    await this.serializeWrite(() => run(this.writer, 'UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]));
    return (await this.getAgent(id)) !== undefined;
  }

  async listBrokerCredentials(): Promise<BrokerCredential[]> {
    this.assertOpen();
    const rows = await all<{ agent_id: string; mosquitto_hash: string }>(
      this.reader,
      'SELECT c.agent_id, c.mosquitto_hash FROM agent_broker_credentials c JOIN agents a ON a.id = c.agent_id WHERE a.revoked_at IS NULL ORDER BY a.created_at, a.id',
    );
    return rows.map((r) => ({ agentId: r.agent_id, mosquittoHash: r.mosquitto_hash }));
  }

  async listAgents(): Promise<AgentRecord[]> {
    this.assertOpen();
    return (await all<AgentRow>(this.reader, `SELECT ${AGENT_COLUMNS} FROM agents ORDER BY created_at, id`)).map(toAgent);
  }

  async markAgentSeen(id: string, atMs: number): Promise<void> {
    this.assertOpen();
    await this.serializeWrite(() => run(this.writer, 'UPDATE agents SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?', [atMs, id]));
  }

  async bufferStats(agentId?: string): Promise<AgentBufferStats[]> {
    this.assertOpen();
    const rows = await all<{ agent_id: string; buffer_id: string; committed_seq: number; messages: number; bytes: number; first_commit_at: number; last_commit_at: number }>(
      this.reader,
      `SELECT agent_id, buffer_id, committed_seq, messages, bytes, first_commit_at, last_commit_at FROM agent_buffers ${agentId === undefined ? '' : 'WHERE agent_id = ?'} ORDER BY agent_id, first_commit_at`,
      agentId === undefined ? [] : [agentId],
    );
    return rows.map((r) => ({
      agentId: r.agent_id,
      bufferId: r.buffer_id,
      committedSeq: r.committed_seq,
      messages: r.messages,
      bytes: r.bytes,
      firstCommitAt: r.first_commit_at,
      lastCommitAt: r.last_commit_at,
    }));
  }

  createEnrollmentToken(input: NewEnrollmentTokenInput): Promise<IssuedEnrollmentToken> {
    this.assertOpen();
    return admin.createEnrollmentToken(this.admin, input);
  }

  revokeEnrollmentToken(id: string): Promise<boolean> {
    this.assertOpen();
    return admin.revokeEnrollmentToken(this.admin, id);
  }

  consumeEnrollmentToken(token: string): Promise<EnrollmentTokenCheck> {
    this.assertOpen();
    return admin.consumeEnrollmentToken(this.admin, token);
  }

  createApiToken(input: { readonly name: string; readonly role: ApiRole }): Promise<IssuedApiToken> {
    this.assertOpen();
    return admin.createApiToken(this.admin, input);
  }

  revokeApiToken(id: string): Promise<boolean> {
    this.assertOpen();
    return admin.revokeApiToken(this.admin, id);
  }

  verifyApiToken(token: string): Promise<ApiTokenIdentity | undefined> {
    this.assertOpen();
    return admin.verifyApiToken(this.admin, token);
  }

  countApiTokens(): Promise<number> {
    this.assertOpen();
    return admin.countApiTokens(this.admin);
  }

  createPolicy(input: NewPolicyInput): Promise<{ policy: PolicyRecord; version: PolicyVersionRecord }> {
    this.assertOpen();
    return fleet.createPolicy(this.admin, input);
  }

  updatePolicy(id: string, input: PolicyUpdateInput): Promise<PolicyUpdateResult | undefined> {
    this.assertOpen();
    return fleet.updatePolicy(this.admin, id, input);
  }

  getPolicy(id: string): Promise<PolicyRecord | undefined> {
    this.assertOpen();
    return fleet.getPolicy(this.admin, id);
  }

  listPolicies(): Promise<PolicyRecord[]> {
    this.assertOpen();
    return fleet.listPolicies(this.admin);
  }

  getPolicyVersion(id: string, version?: number): Promise<PolicyVersionRecord | undefined> {
    this.assertOpen();
    return fleet.getPolicyVersion(this.admin, id, version);
  }

  setAgentPolicy(agentId: string, policyId: string): Promise<string | undefined> {
    this.assertOpen();
    return fleet.setAgentPolicy(this.admin, agentId, policyId);
  }

  saveAgentStatuses(records: readonly AgentStatusRecord[]): Promise<void> {
    this.assertOpen();
    return fleet.saveAgentStatuses(this.admin, records);
  }

  listAgentStatuses(): Promise<AgentStatusRecord[]> {
    this.assertOpen();
    return fleet.listAgentStatuses(this.admin);
  }

  createCommand(input: NewCommandInput): Promise<CommandRecord> {
    this.assertOpen();
    return fleet.createCommand(this.admin, input);
  }

  finishCommand(agentId: string, id: string, outcome: { readonly status: Exclude<CommandStatus, 'pending'>; readonly result: Readonly<Record<string, unknown>> }): Promise<CommandRecord | undefined> {
    this.assertOpen();
    return fleet.finishCommand(this.admin, agentId, id, outcome);
  }

  getCommand(agentId: string, id: string): Promise<CommandRecord | undefined> {
    this.assertOpen();
    return fleet.getCommand(this.admin, agentId, id);
  }

  listCommands(agentId: string, query: { readonly limit?: number; readonly cursor?: string }): Promise<CommandPage> {
    this.assertOpen();
    return fleet.listCommands(this.admin, agentId, query);
  }

  expireCommands(nowMs: number): Promise<CommandRecord[]> {
    this.assertOpen();
    return fleet.expireCommands(this.admin, nowMs);
  }

  countCommandsByStatus(): Promise<Record<CommandStatus, number>> {
    this.assertOpen();
    return fleet.countCommandsByStatus(this.admin);
  }

  audit(entry: AuditInput): Promise<AuditEntry> {
    this.assertOpen();
    return admin.appendAudit(this.admin, entry);
  }

  listAudit(query: { readonly limit?: number; readonly cursor?: string }): Promise<AuditPage> {
    this.assertOpen();
    return admin.listAudit(this.admin, query);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeTail.catch(() => {});
    for (const stmt of [...this.insertStatements.values(), ...this.statements.values()]) await finalize(stmt);
    this.insertStatements.clear();
    this.statements.clear();
    await exec(this.writer, 'PRAGMA wal_checkpoint(TRUNCATE);').catch(() => {});
    await close(this.reader);
    await close(this.writer);
  }

  private assertOpen(): void {
    if (this.closed) throw new ControlPlaneError('store_closed', 'store is closed');
  }

  /** Runs write operations one after another on the writer connection. */
  private serializeWrite<T>(op: () => Promise<T>): Promise<T> {
    const result = this.writeTail.then(op);
    this.writeTail = result.catch(() => {});
    return result;
  }

  /** Inside the write turn: the writer sees every commit, including the one just made. */
  private async readCommitted(agentId: string, bufferId: string): Promise<number> {
    const key = committedKey(agentId, bufferId);
    const known = this.committedCache.get(key);
    if (known !== undefined) return known;
    const stmt = await this.statement('SELECT committed_seq FROM agent_buffers WHERE agent_id = ? AND buffer_id = ?');
    const row = await getStatement<{ committed_seq: number }>(stmt, [agentId, bufferId]);
    const committed = row?.committed_seq ?? 0;
    this.committedCache.set(key, committed);
    return committed;
  }

  /**
   * One multi-row INSERT; a row already stored (same agent, buffer, seq) is skipped, nothing else
   * is. What every row of a batch shares (agent, buffer, stored_at, key: ?1-?4) is bound once per
   * statement, 12 values per row instead of 16: binding is main-thread work in node-sqlite3, and
   * the two ids are its longest strings (the drain profile's largest cost after the nonces).
   */
  private async insertChunk(
    agentId: string,
    bufferId: string,
    keyId: string,
    storedAt: number,
    envelopes: readonly IncomingEnvelope[],
    sealed: readonly Buffer[],
    offset: number,
    count: number,
  ): Promise<number> {
    let stmt = this.insertStatements.get(count);
    if (!stmt) {
      const rows: string[] = [];
      for (let r = 0; r < count; r++) {
        const b = SHARED_PARAMS + 1 + r * ROW_PARAMS;
        const p = (k: number): string => `?${b + k}`;
        // agent, buffer, seq, source, received_at, stored_at, type, trigger, control id, app, facility, version, size, sha256, key, payload
        rows.push(`(?1,?2,${p(0)},${p(1)},${p(2)},?3,${p(3)},${p(4)},${p(5)},${p(6)},${p(7)},${p(8)},${p(9)},${p(10)},?4,${p(11)})`);
      }
      stmt = await prepare(this.writer, `INSERT INTO messages (${INSERT_COLUMNS}) VALUES ${rows.join(',')} ON CONFLICT (agent_id, buffer_id, seq) DO NOTHING`);
      this.insertStatements.set(count, stmt);
    }
    const params = new Array<SqlValue>(SHARED_PARAMS + count * ROW_PARAMS);
    params[0] = agentId;
    params[1] = bufferId;
    params[2] = storedAt;
    params[3] = keyId;
    let j = SHARED_PARAMS;
    for (let i = offset; i < offset + count; i++) {
      const e = envelopes[i]!;
      const m = e.metadata;
      params[j++] = e.seq;
      params[j++] = e.sourceId;
      params[j++] = e.receivedAtMs;
      params[j++] = m.messageType;
      params[j++] = m.triggerEvent;
      params[j++] = m.controlId;
      params[j++] = m.sendingApplication;
      params[j++] = m.sendingFacility;
      params[j++] = m.version;
      params[j++] = e.payload.length;
      params[j++] = e.sha256;
      params[j++] = sealed[i]!;
    }
    return (await runStatement(stmt, params)).changes;
  }

  private async statement(sql: string): Promise<sqlite3.Statement> {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = await prepare(this.writer, sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }
}

const AGENT_COLUMNS = 'id, name, policy_id, created_at, revoked_at, last_seen, secret_salt, secret_hash';

/** Brings a store made by an older version up to SCHEMA_VERSION, one step per version, each in its own transaction. */
async function migrate(db: sqlite3.Database): Promise<void> {
  for (;;) {
    const row = await get<{ value: string }>(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    const from = Number(row?.value);
    const step = MIGRATIONS[from];
    if (step === undefined || from >= SCHEMA_VERSION) return;
    try {
      await exec(db, `BEGIN IMMEDIATE; ${step} UPDATE meta SET value = '${from + 1}' WHERE key = 'schema_version'; COMMIT;`);
    } catch (err) {
      await exec(db, 'ROLLBACK').catch(() => {});
      throw new ControlPlaneError('store_io', `upgrading the store from schema version ${from} failed; it is unchanged`, { cause: err });
    }
  }
}

interface AgentRow {
  readonly id: string;
  readonly name: string;
  readonly policy_id: string;
  readonly created_at: number;
  readonly revoked_at: number | null;
  readonly last_seen: number | null;
  readonly secret_salt: Buffer;
  readonly secret_hash: Buffer;
}

function toAgent(row: AgentRow): AgentRecord {
  return { id: row.id, name: row.name, policyId: row.policy_id, createdAt: row.created_at, revokedAt: row.revoked_at, lastSeen: row.last_seen };
}

function toSummary(row: Record<string, SqlValue>): MessageSummary {
  return {
    id: String(row.id),
    agentId: String(row.agent_id),
    bufferId: String(row.buffer_id),
    sourceId: String(row.source_id),
    seq: Number(row.seq),
    receivedAt: Number(row.received_at),
    storedAt: Number(row.stored_at),
    messageType: String(row.message_type),
    triggerEvent: String(row.trigger_event),
    controlId: String(row.control_id),
    sendingApplication: String(row.sending_app),
    sendingFacility: String(row.sending_facility),
    version: String(row.version),
    size: Number(row.size),
    sha256: (row.sha256 as Buffer).toString('hex'),
  };
}

function previousPowerOfTwo(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

function committedKey(agentId: string, bufferId: string): string {
  return `${agentId}\0${bufferId}`;
}
