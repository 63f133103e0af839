// Enrollment and API tokens: 32 random bytes (base64url) behind a short prefix that says what the
// token is for (so a leaked one is recognisable in a scanner). Only SHA-256 of the token is kept:
// the token is a random 256-bit value, so its hash cannot be inverted, and looking a token up by
// its hash is the whole check (no secret-dependent comparison on our side).

import { createHash, randomBytes } from 'node:crypto';

export const ENROLLMENT_TOKEN_PREFIX = 'ferry_enroll_';
export const API_TOKEN_PREFIX = 'ferry_api_';

export function newToken(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
