// Checks a whole batch before a store writes any of it: one bad envelope rejects the batch, so a
// batch is stored entirely or not at all. Shared by every store implementation.

import { createHash, timingSafeEqual } from 'node:crypto';
import { ControlPlaneError } from '../errors.js';
import type { IncomingEnvelope } from './types.js';

const SHA256_BYTES = 32;
const MAX_ID_LENGTH = 256;

export function checkIds(agentId: string, bufferId: string): void {
  if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > MAX_ID_LENGTH) throw new ControlPlaneError('batch_invalid', 'agent id is empty or too long');
  if (typeof bufferId !== 'string' || bufferId.length === 0 || bufferId.length > MAX_ID_LENGTH) throw new ControlPlaneError('batch_invalid', 'buffer id is empty or too long');
}

/**
 * Throws `batch_invalid` (seqs not positive safe integers or not strictly increasing, empty source
 * id, sha256 of the wrong length) or `payload_hash_mismatch` (a payload that is not what the agent
 * hashed: corrupted on the way or by a bug). Error messages name the seq and hash prefixes only.
 */
export function checkBatch(envelopes: readonly IncomingEnvelope[]): void {
  let previous = 0;
  for (const e of envelopes) {
    if (!Number.isSafeInteger(e.seq) || e.seq <= 0) throw new ControlPlaneError('batch_invalid', `seq ${String(e.seq)} is not a positive integer below 2^53`);
    if (e.seq <= previous) throw new ControlPlaneError('batch_invalid', `seqs in a batch must be strictly increasing: ${e.seq} follows ${previous}`);
    previous = e.seq;
    if (typeof e.sourceId !== 'string' || e.sourceId.length === 0 || e.sourceId.length > MAX_ID_LENGTH) throw new ControlPlaneError('batch_invalid', `seq ${e.seq}: source id is empty or too long`);
    if (!Number.isSafeInteger(e.receivedAtMs)) throw new ControlPlaneError('batch_invalid', `seq ${e.seq}: received time is not an integer`);
    if (e.sha256.length !== SHA256_BYTES) throw new ControlPlaneError('batch_invalid', `seq ${e.seq}: sha256 is ${e.sha256.length} bytes, not ${SHA256_BYTES}`);
  }
  for (const e of envelopes) {
    const actual = createHash('sha256').update(e.payload).digest();
    if (!timingSafeEqual(actual, e.sha256)) {
      throw new ControlPlaneError(
        'payload_hash_mismatch',
        `seq ${e.seq} (source ${e.sourceId}, ${e.payload.length} bytes): payload sha256 ${actual.toString('hex').slice(0, 12)}… does not match the declared ${e.sha256.toString('hex').slice(0, 12)}…; the whole batch is rejected`,
      );
    }
  }
}
