// The store's fleet tables on SQLite: policies and their versions, each agent's latest status, and
// commands. Writes take the store's write turn (one at a time on the writer connection), so "read
// the latest version, insert the next" and "finish only a pending command" are atomic.

import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ControlPlaneError } from '../../errors.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import {
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
} from '../types.js';
import type { AdminContext } from './admin.js';
import { all, get, run } from './sqlite.js';

/** Policy ids: letters, digits, ".", "_", "-" (a slug or a UUID). */
export const POLICY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

interface PolicyRow {
  readonly id: string;
  readonly name: string;
  readonly latest_version: number;
  readonly created_at: number;
  readonly created_by: string;
  readonly updated_at: number;
}

interface VersionRow {
  readonly policy_id: string;
  readonly version: number;
  readonly config: string;
  readonly created_by: string;
  readonly created_at: number;
}

const toPolicy = (r: PolicyRow): PolicyRecord => ({ id: r.id, name: r.name, latestVersion: r.latest_version, createdAt: r.created_at, createdBy: r.created_by, updatedAt: r.updated_at });
const toVersion = (r: VersionRow): PolicyVersionRecord => ({
  policyId: r.policy_id,
  version: r.version,
  config: JSON.parse(r.config) as Record<string, unknown>,
  createdBy: r.created_by,
  createdAt: r.created_at,
});

/** The built-in `default` policy (sets nothing, version 1), made on the first open of any store. */
export async function ensureDefaultPolicy(ctx: AdminContext): Promise<void> {
  const now = ctx.now();
  await ctx.serializeWrite(async () => {
    await run(ctx.writer, 'BEGIN IMMEDIATE');
    try {
      const made = await run(ctx.writer, 'INSERT OR IGNORE INTO policies (id, name, latest_version, created_at, created_by, updated_at) VALUES (?, ?, 1, ?, ?, ?)', [
        DEFAULT_POLICY_ID,
        'Default (sets nothing: agents run their local file)',
        now,
        'system',
        now,
      ]);
      if (made.changes === 1) await run(ctx.writer, 'INSERT OR IGNORE INTO policy_versions (policy_id, version, config, created_by, created_at) VALUES (?, 1, ?, ?, ?)', [DEFAULT_POLICY_ID, '{}', 'system', now]);
      await run(ctx.writer, 'COMMIT');
    } catch (err) {
      await run(ctx.writer, 'ROLLBACK').catch(() => {});
      throw new ControlPlaneError('store_io', 'creating the default policy failed', { cause: err });
    }
  });
}

export async function createPolicy(ctx: AdminContext, input: NewPolicyInput): Promise<{ policy: PolicyRecord; version: PolicyVersionRecord }> {
  const id = input.id ?? randomUUID();
  if (!POLICY_ID_PATTERN.test(id)) throw new ControlPlaneError('query_invalid', 'policy id must be 1-128 letters, digits, ".", "_" or "-"');
  const now = ctx.now();
  const config = JSON.stringify(input.config);
  return ctx.serializeWrite(async () => {
    await run(ctx.writer, 'BEGIN IMMEDIATE');
    try {
      const made = await run(ctx.writer, 'INSERT OR IGNORE INTO policies (id, name, latest_version, created_at, created_by, updated_at) VALUES (?, ?, 1, ?, ?, ?)', [id, input.name, now, input.createdBy, now]);
      if (made.changes !== 1) throw new ControlPlaneError('policy_exists', `a policy with id "${id}" exists`);
      await run(ctx.writer, 'INSERT INTO policy_versions (policy_id, version, config, created_by, created_at) VALUES (?, 1, ?, ?, ?)', [id, config, input.createdBy, now]);
      await run(ctx.writer, 'COMMIT');
    } catch (err) {
      await run(ctx.writer, 'ROLLBACK').catch(() => {});
      if (err instanceof ControlPlaneError) throw err;
      throw new ControlPlaneError('store_io', 'storing the policy failed', { cause: err });
    }
    return {
      policy: { id, name: input.name, latestVersion: 1, createdAt: now, createdBy: input.createdBy, updatedAt: now },
      version: { policyId: id, version: 1, config: input.config, createdBy: input.createdBy, createdAt: now },
    };
  });
}

export function updatePolicy(ctx: AdminContext, id: string, input: PolicyUpdateInput): Promise<PolicyUpdateResult | undefined> {
  const now = ctx.now();
  return ctx.serializeWrite(async () => {
    await run(ctx.writer, 'BEGIN IMMEDIATE');
    try {
      const row = await get<PolicyRow>(ctx.writer, 'SELECT id, name, latest_version, created_at, created_by, updated_at FROM policies WHERE id = ?', [id]);
      if (!row) {
        await run(ctx.writer, 'ROLLBACK');
        return undefined;
      }
      const prevRow = await get<VersionRow>(ctx.writer, 'SELECT policy_id, version, config, created_by, created_at FROM policy_versions WHERE policy_id = ? AND version = ?', [id, row.latest_version]);
      const previous = toVersion(prevRow!);
      let current = previous;
      // A document equal to the latest makes no version: nothing would change on any agent.
      if (input.config !== undefined && !isDeepStrictEqual(input.config, previous.config)) {
        current = { policyId: id, version: row.latest_version + 1, config: input.config, createdBy: input.updatedBy, createdAt: now };
        await run(ctx.writer, 'INSERT INTO policy_versions (policy_id, version, config, created_by, created_at) VALUES (?, ?, ?, ?, ?)', [
          id,
          current.version,
          JSON.stringify(input.config),
          input.updatedBy,
          now,
        ]);
      }
      const name = input.name ?? row.name;
      const changed = current !== previous || name !== row.name;
      if (changed) await run(ctx.writer, 'UPDATE policies SET name = ?, latest_version = ?, updated_at = ? WHERE id = ?', [name, current.version, now, id]);
      await run(ctx.writer, 'COMMIT');
      return { previous, current, previousName: row.name, policy: { ...toPolicy(row), name, latestVersion: current.version, updatedAt: changed ? now : row.updated_at } };
    } catch (err) {
      await run(ctx.writer, 'ROLLBACK').catch(() => {});
      throw new ControlPlaneError('store_io', 'storing the policy version failed', { cause: err });
    }
  });
}

export async function getPolicy(ctx: AdminContext, id: string): Promise<PolicyRecord | undefined> {
  const row = await get<PolicyRow>(ctx.reader, 'SELECT id, name, latest_version, created_at, created_by, updated_at FROM policies WHERE id = ?', [id]);
  return row ? toPolicy(row) : undefined;
}

export async function listPolicies(ctx: AdminContext): Promise<PolicyRecord[]> {
  return (await all<PolicyRow>(ctx.reader, 'SELECT id, name, latest_version, created_at, created_by, updated_at FROM policies ORDER BY created_at, rowid')).map(toPolicy);
}

export async function getPolicyVersion(ctx: AdminContext, id: string, version?: number): Promise<PolicyVersionRecord | undefined> {
  const row =
    version === undefined
      ? await get<VersionRow>(
          ctx.reader,
          'SELECT v.policy_id, v.version, v.config, v.created_by, v.created_at FROM policy_versions v JOIN policies p ON p.id = v.policy_id AND p.latest_version = v.version WHERE p.id = ?',
          [id],
        )
      : await get<VersionRow>(ctx.reader, 'SELECT policy_id, version, config, created_by, created_at FROM policy_versions WHERE policy_id = ? AND version = ?', [id, version]);
  return row ? toVersion(row) : undefined;
}

export function setAgentPolicy(ctx: AdminContext, agentId: string, policyId: string): Promise<string | undefined> {
  return ctx.serializeWrite(async () => {
    const agent = await get<{ policy_id: string }>(ctx.writer, 'SELECT policy_id FROM agents WHERE id = ?', [agentId]);
    if (!agent) return undefined;
    if ((await get(ctx.writer, 'SELECT 1 AS x FROM policies WHERE id = ?', [policyId])) === undefined) throw new ControlPlaneError('policy_unknown', `no policy with id "${policyId}"`);
    await run(ctx.writer, 'UPDATE agents SET policy_id = ? WHERE id = ?', [policyId, agentId]);
    return agent.policy_id;
  });
}

/** Rows per multi-row upsert: 200 × 6 parameters stays far below SQLite's limit. */
const STATUS_ROWS_PER_STATEMENT = 200;

export function saveAgentStatuses(ctx: AdminContext, records: readonly AgentStatusRecord[]): Promise<void> {
  if (records.length === 0) return Promise.resolve();
  return ctx.serializeWrite(async () => {
    await run(ctx.writer, 'BEGIN IMMEDIATE');
    try {
      for (let offset = 0; offset < records.length; offset += STATUS_ROWS_PER_STATEMENT) {
        const chunk = records.slice(offset, offset + STATUS_ROWS_PER_STATEMENT);
        const params = chunk.flatMap((r) => [r.agentId, JSON.stringify(r.status), r.receivedAt, r.online ? 1 : 0, r.appliedPolicyVersion, JSON.stringify(r.backlogSamples)]);
        await run(
          ctx.writer,
          `INSERT INTO agent_status (agent_id, status, received_at, online, applied_policy_version, backlog_samples) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}
           ON CONFLICT (agent_id) DO UPDATE SET status = excluded.status, received_at = excluded.received_at, online = excluded.online,
             applied_policy_version = excluded.applied_policy_version, backlog_samples = excluded.backlog_samples`,
          params,
        );
      }
      await run(ctx.writer, 'COMMIT');
    } catch (err) {
      await run(ctx.writer, 'ROLLBACK').catch(() => {});
      throw new ControlPlaneError('store_io', 'storing agent statuses failed', { cause: err });
    }
  });
}

export async function listAgentStatuses(ctx: AdminContext): Promise<AgentStatusRecord[]> {
  const rows = await all<{ agent_id: string; status: string; received_at: number; online: number; applied_policy_version: number | null; backlog_samples: string }>(
    ctx.reader,
    'SELECT agent_id, status, received_at, online, applied_policy_version, backlog_samples FROM agent_status',
  );
  return rows.map((r) => ({
    agentId: r.agent_id,
    status: JSON.parse(r.status) as Record<string, unknown>,
    receivedAt: r.received_at,
    online: r.online === 1,
    appliedPolicyVersion: r.applied_policy_version,
    backlogSamples: JSON.parse(r.backlog_samples) as BacklogSample[],
  }));
}

interface CommandRow {
  readonly seq: number;
  readonly id: string;
  readonly agent_id: string;
  readonly type: string;
  readonly args: string;
  readonly issued_by: string;
  readonly issued_at: number;
  readonly expires_at: number;
  readonly status: CommandStatus;
  readonly result: string | null;
  readonly finished_at: number | null;
}

const COMMAND_COLUMNS = 'seq, id, agent_id, type, args, issued_by, issued_at, expires_at, status, result, finished_at';

const toCommand = (r: CommandRow): CommandRecord => ({
  id: r.id,
  agentId: r.agent_id,
  type: r.type,
  args: JSON.parse(r.args) as Record<string, unknown>,
  issuedBy: r.issued_by,
  issuedAt: r.issued_at,
  expiresAt: r.expires_at,
  status: r.status,
  result: r.result === null ? null : (JSON.parse(r.result) as Record<string, unknown>),
  finishedAt: r.finished_at,
});

export async function createCommand(ctx: AdminContext, input: NewCommandInput): Promise<CommandRecord> {
  if (!Number.isSafeInteger(input.expiresInSecs) || input.expiresInSecs < 1) throw new ControlPlaneError('query_invalid', 'expires_in_secs must be a positive integer');
  const record: CommandRecord = {
    id: randomUUID(),
    agentId: input.agentId,
    type: input.type,
    args: input.args,
    issuedBy: input.issuedBy,
    issuedAt: ctx.now(),
    expiresAt: ctx.now() + input.expiresInSecs * 1000,
    status: 'pending',
    result: null,
    finishedAt: null,
  };
  await ctx.serializeWrite(() =>
    run(ctx.writer, 'INSERT INTO commands (id, agent_id, type, args, issued_by, issued_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      record.id,
      record.agentId,
      record.type,
      JSON.stringify(record.args),
      record.issuedBy,
      record.issuedAt,
      record.expiresAt,
      'pending',
    ]),
  );
  return record;
}

export function finishCommand(
  ctx: AdminContext,
  agentId: string,
  id: string,
  outcome: { readonly status: Exclude<CommandStatus, 'pending'>; readonly result: Readonly<Record<string, unknown>> },
): Promise<CommandRecord | undefined> {
  const now = ctx.now();
  return ctx.serializeWrite(async () => {
    // The agent's answer is what happened, so it also replaces an expiry the sweep recorded without
    // one; a second answer (redelivery) finds result set and changes nothing.
    const changed = await run(
      ctx.writer,
      "UPDATE commands SET status = ?, result = ?, finished_at = ? WHERE id = ? AND agent_id = ? AND (status = 'pending' OR (status = 'expired' AND result IS NULL))",
      [outcome.status, JSON.stringify(outcome.result), now, id, agentId],
    );
    if (changed.changes !== 1) return undefined;
    const row = await get<CommandRow>(ctx.writer, `SELECT ${COMMAND_COLUMNS} FROM commands WHERE id = ?`, [id]);
    return row ? toCommand(row) : undefined;
  });
}

export async function getCommand(ctx: AdminContext, agentId: string, id: string): Promise<CommandRecord | undefined> {
  const row = await get<CommandRow>(ctx.reader, `SELECT ${COMMAND_COLUMNS} FROM commands WHERE id = ? AND agent_id = ?`, [id, agentId]);
  return row ? toCommand(row) : undefined;
}

export async function listCommands(ctx: AdminContext, agentId: string, query: { readonly limit?: number; readonly cursor?: string }): Promise<CommandPage> {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) throw new ControlPlaneError('query_invalid', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
  if (cursor && cursor.order !== 'desc') throw new ControlPlaneError('cursor_invalid', 'cursor is not one this store issued');
  const rows = await all<CommandRow>(
    ctx.reader,
    `SELECT ${COMMAND_COLUMNS} FROM commands WHERE agent_id = ? ${cursor ? 'AND seq < ?' : ''} ORDER BY seq DESC LIMIT ?`,
    cursor ? [agentId, cursor.afterId, limit + 1] : [agentId, limit + 1],
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(toCommand), nextCursor: rows.length > limit && last ? encodeCursor({ order: 'desc', afterId: last.seq }) : null };
}

export function expireCommands(ctx: AdminContext, nowMs: number): Promise<CommandRecord[]> {
  return ctx.serializeWrite(async () => {
    const rows = await all<CommandRow>(ctx.writer, `SELECT ${COMMAND_COLUMNS} FROM commands WHERE status = 'pending' AND expires_at <= ?`, [nowMs]);
    if (rows.length === 0) return [];
    await run(ctx.writer, "UPDATE commands SET status = 'expired', finished_at = ? WHERE status = 'pending' AND expires_at <= ?", [nowMs, nowMs]);
    return rows.map((r) => ({ ...toCommand(r), status: 'expired' as const, finishedAt: nowMs }));
  });
}

export async function countCommandsByStatus(ctx: AdminContext): Promise<Record<CommandStatus, number>> {
  const counts: Record<CommandStatus, number> = { pending: 0, succeeded: 0, failed: 0, expired: 0 };
  for (const r of await all<{ status: CommandStatus; n: number }>(ctx.reader, 'SELECT status, COUNT(*) AS n FROM commands GROUP BY status')) counts[r.status] = r.n;
  return counts;
}
