// The store's administrative tables on SQLite: enrollment tokens, API tokens and the audit log.
// Writes take the store's write turn (one at a time on the writer connection), so checking and
// counting a use of an enrollment token is atomic with respect to every other write.

import { randomUUID } from 'node:crypto';
import type sqlite3 from 'sqlite3';
import { ControlPlaneError } from '../../errors.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import { API_TOKEN_PREFIX, ENROLLMENT_TOKEN_PREFIX, newToken, tokenHash } from '../tokens.js';
import {
  API_ROLES,
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  type ApiRole,
  type ApiTokenIdentity,
  type AuditEntry,
  type AuditInput,
  type AuditPage,
  type EnrollmentTokenCheck,
  type IssuedApiToken,
  type IssuedEnrollmentToken,
  type NewEnrollmentTokenInput,
} from '../types.js';
import { all, get, run } from './sqlite.js';

export const DEFAULT_ENROLLMENT_POLICY = 'default';
export const DEFAULT_ENROLLMENT_TTL_SECS = 24 * 60 * 60;
export const DEFAULT_ENROLLMENT_MAX_USES = 1;

export interface AdminContext {
  readonly writer: sqlite3.Database;
  readonly reader: sqlite3.Database;
  readonly now: () => number;
  serializeWrite<T>(op: () => Promise<T>): Promise<T>;
}

interface EnrollmentRow {
  readonly id: string;
  readonly policy_id: string;
  readonly expires_at: number;
  readonly max_uses: number;
  readonly uses: number;
  readonly revoked_at: number | null;
}

export async function createEnrollmentToken(ctx: AdminContext, input: NewEnrollmentTokenInput): Promise<IssuedEnrollmentToken> {
  const policyId = input.policyId ?? DEFAULT_ENROLLMENT_POLICY;
  const ttl = input.expiresInSecs ?? DEFAULT_ENROLLMENT_TTL_SECS;
  const maxUses = input.maxUses ?? DEFAULT_ENROLLMENT_MAX_USES;
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new ControlPlaneError('query_invalid', 'expires_in_secs must be a positive integer');
  if (!Number.isSafeInteger(maxUses) || maxUses < 1) throw new ControlPlaneError('query_invalid', 'max_uses must be a positive integer');
  const id = randomUUID();
  const token = newToken(ENROLLMENT_TOKEN_PREFIX);
  const createdAt = ctx.now();
  const expiresAt = createdAt + ttl * 1000;
  await ctx.serializeWrite(async () => {
    // In the write turn, so the policy cannot vanish between the check and the insert.
    if ((await get(ctx.writer, 'SELECT 1 AS x FROM policies WHERE id = ?', [policyId])) === undefined) throw new ControlPlaneError('policy_unknown', `no policy with id "${policyId}"`);
    await run(ctx.writer, 'INSERT INTO enrollment_tokens (id, token_hash, policy_id, created_at, created_by, expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      id,
      tokenHash(token),
      policyId,
      createdAt,
      input.createdBy,
      expiresAt,
      maxUses,
    ]);
  });
  return { id, token, policyId, createdAt, expiresAt, maxUses, uses: 0, revokedAt: null, createdBy: input.createdBy };
}

export async function revokeEnrollmentToken(ctx: AdminContext, id: string): Promise<boolean> {
  const now = ctx.now();
  return ctx.serializeWrite(async () => {
    await run(ctx.writer, 'UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]);
    return (await get(ctx.writer, 'SELECT 1 AS x FROM enrollment_tokens WHERE id = ?', [id])) !== undefined;
  });
}

export function consumeEnrollmentToken(ctx: AdminContext, token: string): Promise<EnrollmentTokenCheck> {
  const hash = tokenHash(token);
  return ctx.serializeWrite(async (): Promise<EnrollmentTokenCheck> => {
    const row = await get<EnrollmentRow>(ctx.writer, 'SELECT id, policy_id, expires_at, max_uses, uses, revoked_at FROM enrollment_tokens WHERE token_hash = ?', [hash]);
    if (!row) return { status: 'unknown' };
    if (row.revoked_at !== null) return { status: 'revoked' };
    if (ctx.now() >= row.expires_at) return { status: 'expired' };
    if (row.uses >= row.max_uses) return { status: 'used_up' };
    // The WHERE repeats the check so the count can never pass max_uses.
    const result = await run(ctx.writer, 'UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses AND revoked_at IS NULL', [row.id]);
    if (result.changes !== 1) return { status: 'used_up' };
    return { status: 'ok', tokenId: row.id, policyId: row.policy_id };
  });
}

export async function createApiToken(ctx: AdminContext, input: { readonly name: string; readonly role: ApiRole }): Promise<IssuedApiToken> {
  if (!API_ROLES.includes(input.role)) throw new ControlPlaneError('query_invalid', `role must be one of ${API_ROLES.join(', ')}`);
  const id = randomUUID();
  const token = newToken(API_TOKEN_PREFIX);
  await ctx.serializeWrite(() =>
    run(ctx.writer, 'INSERT INTO api_tokens (id, token_hash, name, role, created_at) VALUES (?, ?, ?, ?, ?)', [id, tokenHash(token), input.name, input.role, ctx.now()]),
  );
  return { id, name: input.name, role: input.role, token };
}

export async function revokeApiToken(ctx: AdminContext, id: string): Promise<boolean> {
  const now = ctx.now();
  return ctx.serializeWrite(async () => {
    await run(ctx.writer, 'UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]);
    return (await get(ctx.writer, 'SELECT 1 AS x FROM api_tokens WHERE id = ?', [id])) !== undefined;
  });
}

export async function verifyApiToken(ctx: AdminContext, token: string): Promise<ApiTokenIdentity | undefined> {
  if (token.length === 0 || token.length > 256) return undefined;
  const row = await get<{ id: string; name: string; role: ApiRole }>(ctx.reader, 'SELECT id, name, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL', [
    tokenHash(token),
  ]);
  return row ? { tokenId: row.id, name: row.name, role: row.role } : undefined;
}

export async function countApiTokens(ctx: AdminContext): Promise<number> {
  const row = await get<{ n: number }>(ctx.reader, 'SELECT COUNT(*) AS n FROM api_tokens');
  return row?.n ?? 0;
}

export async function appendAudit(ctx: AdminContext, entry: AuditInput): Promise<AuditEntry> {
  const at = ctx.now();
  const details = entry.details ?? {};
  const result = await ctx.serializeWrite(() =>
    run(ctx.writer, 'INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)', [at, entry.actor, entry.action, entry.target, JSON.stringify(details)]),
  );
  return { id: String(result.lastID), at, actor: entry.actor, action: entry.action, target: entry.target, details };
}

export async function listAudit(ctx: AdminContext, query: { readonly limit?: number; readonly cursor?: string }): Promise<AuditPage> {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) throw new ControlPlaneError('query_invalid', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
  if (cursor && cursor.order !== 'desc') throw new ControlPlaneError('cursor_invalid', 'cursor is not one this store issued');
  const rows = await all<{ id: number; at: number; actor: string; action: string; target: string; details: string }>(
    ctx.reader,
    `SELECT id, at, actor, action, target, details FROM audit_log ${cursor ? 'WHERE id < ?' : ''} ORDER BY id DESC LIMIT ?`,
    cursor ? [cursor.afterId, limit + 1] : [limit + 1],
  );
  const items = rows.slice(0, limit).map((r) => ({
    id: String(r.id),
    at: r.at,
    actor: r.actor,
    action: r.action,
    target: r.target,
    details: JSON.parse(r.details) as Record<string, unknown>,
  }));
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last ? encodeCursor({ order: 'desc', afterId: Number(last.id) }) : null };
}
