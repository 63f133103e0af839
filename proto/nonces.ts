// Nonces for AES-256-GCM sealing at rest, as both stores use it (the agent's buffer and the
// control plane's store: nonce ‖ ciphertext ‖ tag). Random 96-bit values from a pool the CSPRNG
// refills 1,024 at a time: still random, at a fraction of the cost of one CSPRNG call per row
// (measured in the control plane's drain profile: ~4.7 µs per row, the largest single cost).

import { randomBytes } from 'node:crypto';

export const NONCE_BYTES = 12;

const POOL_BYTES = NONCE_BYTES * 1024;
let pool = Buffer.alloc(0);
let offset = 0;

/** A fresh random 96-bit nonce (a view into the pool: copy it into the sealed blob, do not keep it). */
export function nextNonce(): Buffer {
  if (offset + NONCE_BYTES > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const nonce = pool.subarray(offset, offset + NONCE_BYTES);
  offset += NONCE_BYTES;
  return nonce;
}
