// A fleet policy over the local file (DESIGN.md): each top-level key the policy sets (`sources`,
// `buffer`, `uplink`, `log_level`) replaces the file's; keys it leaves out keep the file's values.
// What stays local (data_dir, admin, buffer.key_file, fleet, shutdown) a policy cannot set at all.

import type { PolicyConfig } from '../../proto/policy/index.js';
import type { AgentConfig } from '../config/index.js';

export function mergePolicy(local: AgentConfig, policy: PolicyConfig | undefined): AgentConfig {
  if (!policy) return local;
  return {
    ...local,
    ...(policy.sources ? { sources: policy.sources } : {}),
    // The key file's location is the machine's business, not the fleet's.
    ...(policy.buffer ? { buffer: { ...local.buffer, max_bytes: policy.buffer.max_bytes } } : {}),
    ...(policy.uplink ? { uplink: policy.uplink } : {}),
    ...(policy.log_level ? { log_level: policy.log_level } : {}),
  };
}

/** Top-level keys whose change a running agent cannot apply live (a restart is needed). */
export function keysNeedingRestart(running: AgentConfig, next: AgentConfig): string[] {
  const live = new Set(['sources', 'buffer', 'uplink', 'log_level']);
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]);
  const out: string[] = [];
  for (const key of keys) {
    if (live.has(key)) {
      if (key === 'buffer' && running.buffer.key_file !== next.buffer.key_file) out.push('buffer.key_file');
      continue;
    }
    if (JSON.stringify(running[key as keyof AgentConfig]) !== JSON.stringify(next[key as keyof AgentConfig])) out.push(key);
  }
  return out;
}
