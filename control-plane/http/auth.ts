// Bearer-token authentication with roles. viewer < operator < admin: a route names the least role
// it needs. The token is never logged; the identity (token id and name) is what handlers see.

import type { Context } from 'hono';
import type { ApiRole, ApiTokenIdentity, MessageStore } from '../store/index.js';
import { ApiError } from './errors.js';

const RANK: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };

export async function authenticate(c: Context, store: MessageStore, needs: ApiRole): Promise<ApiTokenIdentity> {
  const header = c.req.header('authorization');
  if (header === undefined) throw new ApiError('unauthenticated', 'this route needs an API token: Authorization: Bearer <token>');
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m) throw new ApiError('unauthenticated', 'the Authorization header must be "Bearer <token>"');
  const identity = await store.verifyApiToken(m[1]!);
  if (!identity) throw new ApiError('unauthenticated', 'the API token is not valid (unknown or revoked)');
  if (RANK[identity.role] < RANK[needs]) throw new ApiError('forbidden', `this route needs the ${needs} role; the token has ${identity.role}`);
  return identity;
}

/** How an API token appears in the audit log. */
export function actorOf(identity: ApiTokenIdentity): string {
  return `token:${identity.tokenId}`;
}
