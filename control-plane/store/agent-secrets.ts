// Agent secrets: 32 random bytes (base64url), shown once at enrollment. Only a salted HMAC-SHA256
// is kept. A slow KDF (scrypt) protects guessable passwords; a 256-bit random secret cannot be
// guessed, and a fast check keeps a reconnect storm of many agents cheap.

import { createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export interface SecretHash {
  readonly salt: Buffer;
  readonly hash: Buffer;
}

export function newAgentSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashAgentSecret(secret: string, salt: Buffer = randomBytes(16)): SecretHash {
  return { salt, hash: createHmac('sha256', salt).update(secret, 'utf8').digest() };
}

/** Constant-time in the secret: both sides are 32-byte digests whatever the input's length. */
export function secretMatches(secret: string, stored: SecretHash): boolean {
  const candidate = hashAgentSecret(secret, stored.salt).hash;
  return candidate.length === stored.hash.length && timingSafeEqual(candidate, stored.hash);
}

/** A salt/hash pair no secret matches, so unknown agent ids cost the same work as known ones. */
export const NO_AGENT_HASH: SecretHash = { salt: randomBytes(16), hash: Buffer.alloc(32) };

/**
 * The secret as Mosquitto 2's password file stores it (`$7$` = PBKDF2-SHA512, 101 iterations, a
 * 12-byte salt, base64 — what mosquitto_passwd writes). Computed at enrollment, while the plaintext
 * is at hand, so the control plane can write a password file for an external Mosquitto later; as
 * safe to keep as the HMAC above (salted, and the secret is 256 random bits).
 */
export function mosquittoPasswordHash(secret: string, salt: Buffer = randomBytes(12), iterations = 101): string {
  const hash = pbkdf2Sync(secret, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}
