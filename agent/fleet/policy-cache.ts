// DATA_DIR/policy.json: the last policy the agent applied, so that a reboot while the control
// plane (or the network) is down starts the agent on that policy rather than on the bare local
// file. Written atomically, owner-only (it names listeners and folders), after each apply.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { policyMessageSchema, type PolicyMessage } from '../../proto/fleet/index.js';
import { sourcesSchema, type SourceConfig } from '../../proto/policy/index.js';
import { writeSecretFileAtomic } from '../secret-file.js';

export const POLICY_CACHE_FILE = 'policy.json';

const cacheSchema = z.object({
  /** The policy message as received (validated again when read). */
  message: policyMessageSchema,
  /**
   * When some sources of the policy could not start, the source configs that actually ran (their
   * last good ones): the agent starts with these, not with the policy's, until a new version or a
   * `reload` retries.
   */
  sources_in_force: sourcesSchema.nullable().default(null),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).default([]),
  applied_at: z.string(),
});

export interface PolicyCache {
  readonly message: PolicyMessage;
  readonly sourcesInForce: SourceConfig[] | null;
  readonly errors: readonly { path: string; message: string }[];
  readonly appliedAt: string;
}

export function policyCachePath(dataDir: string): string {
  return join(dataDir, POLICY_CACHE_FILE);
}

/** The cached policy, undefined when there is none; throws (with the reason) on a damaged file. */
export function readPolicyCache(dataDir: string): PolicyCache | undefined {
  let text: string;
  try {
    text = readFileSync(policyCachePath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = cacheSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${policyCachePath(dataDir)} does not hold a valid policy (${parsed.error.issues.map((i) => i.path.join('.')).join(', ')})`);
  const c = parsed.data;
  return { message: c.message, sourcesInForce: c.sources_in_force, errors: c.errors, appliedAt: c.applied_at };
}

/** `raw` is the message as received (before defaults), so a newer agent re-reads it with its own defaults. */
export function writePolicyCache(dataDir: string, raw: unknown, sourcesInForce: readonly SourceConfig[] | null, errors: readonly { path: string; message: string }[]): void {
  const doc = { message: raw, sources_in_force: sourcesInForce, errors, applied_at: new Date().toISOString() };
  writeSecretFileAtomic(policyCachePath(dataDir), JSON.stringify(doc, null, 2) + '\n');
}
