// What the agent does with a policy message: validate it (proto's schema), ignore a version it
// already runs (retained redelivery on every reconnect), merge it over the local file, hand the
// merged config to the agent's live apply, record the outcome for the status document, and cache
// the applied policy in the data directory for the next start.

import { policyMessageSchema, type PolicyMessage } from '../../proto/fleet/index.js';
import { toProblem, type ConfigProblem } from '../../proto/policy/index.js';
import type { AgentConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { mergePolicy } from './merge.js';
import { readPolicyCache, writePolicyCache, type PolicyCache } from './policy-cache.js';

/** The `policy` block of the status message (proto/fleet policyApplySchema). */
export interface PolicyApplyState {
  readonly policy_id: string | null;
  readonly applied_version: number | null;
  readonly received_version: number | null;
  readonly state: 'ok' | 'partial' | 'failed' | 'none';
  readonly errors: readonly ConfigProblem[];
}

export interface PolicyApplierDeps {
  readonly dataDir: string;
  readonly log: Logger;
  /** Applies a whole merged config live; answers the parts that could not apply (kept their last good). */
  readonly apply: (config: AgentConfig) => Promise<readonly ConfigProblem[]>;
  /** The source configs in force after an apply (cached when some failed). */
  readonly sourcesInForce: () => AgentConfig['sources'];
}

export const NO_POLICY: PolicyApplyState = { policy_id: null, applied_version: null, received_version: null, state: 'none', errors: [] };

export class PolicyApplier {
  private applied: { message: PolicyMessage; raw: unknown } | undefined;
  private stateValue: PolicyApplyState = NO_POLICY;
  private readonly log: Logger;

  constructor(
    private localConfig: AgentConfig,
    private readonly deps: PolicyApplierDeps,
  ) {
    this.log = deps.log.child({ component: 'fleet', id: 'policy' });
  }

  state(): PolicyApplyState {
    return this.stateValue;
  }

  appliedPolicy(): PolicyMessage | undefined {
    return this.applied?.message;
  }

  /**
   * The config to start with: the local file, with the cached policy over it when there is one
   * (and the last good sources when some of its sources had failed). A damaged cache is reported
   * and ignored: the agent then starts on its local file.
   */
  startConfig(): { config: AgentConfig; cache: PolicyCache | undefined } {
    let cache: PolicyCache | undefined;
    try {
      cache = readPolicyCache(this.deps.dataDir);
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message } }, 'cached policy unreadable; starting from the local config file until the control plane sends the policy again');
      return { config: this.localConfig, cache: undefined };
    }
    if (!cache) return { config: this.localConfig, cache: undefined };
    const merged = mergePolicy(this.localConfig, cache.message.config);
    const config = cache.sourcesInForce ? { ...merged, sources: cache.sourcesInForce } : merged;
    this.applied = { message: cache.message, raw: cache.message };
    this.stateValue = {
      policy_id: cache.message.policy_id,
      applied_version: cache.message.version,
      received_version: cache.message.version,
      state: cache.errors.length > 0 ? 'partial' : 'ok',
      errors: cache.errors,
    };
    this.log.info({ policy_id: cache.message.policy_id, version: cache.message.version, applied_at: cache.appliedAt }, 'starting with the cached policy');
    return { config, cache };
  }

  /** Start-up problems (sources of the cached policy that could not start) join the state. */
  noteStartProblems(problems: readonly ConfigProblem[]): void {
    if (problems.length === 0 || this.stateValue.state === 'none') return;
    this.stateValue = { ...this.stateValue, state: 'partial', errors: problems };
  }

  /** A message from the policy topic. Never throws: every outcome lands in state(). */
  async receive(raw: unknown): Promise<void> {
    const parsed = policyMessageSchema.safeParse(raw);
    if (!parsed.success) {
      const r = (raw ?? {}) as { policy_id?: unknown; version?: unknown };
      const version = typeof r.version === 'number' ? r.version : null;
      const problems = parsed.error.issues.map(toProblem);
      this.stateValue = { ...this.stateValue, received_version: version, state: 'failed', errors: problems };
      this.log.error({ policy_id: typeof r.policy_id === 'string' ? r.policy_id : null, version, problems }, 'policy refused: it does not validate; the agent keeps its current configuration');
      return;
    }
    const message = parsed.data;
    const current = this.applied?.message;
    if (current && current.policy_id === message.policy_id && message.version <= current.version) {
      this.log.debug({ policy_id: message.policy_id, version: message.version, applied: current.version }, 'policy version already applied; ignored');
      return;
    }
    await this.applyMessage(message, raw);
  }

  /** `reload`: the local file read again, the applied policy over it, applied again (failed sources retried). */
  async reload(localConfig: AgentConfig): Promise<PolicyApplyState> {
    this.localConfig = localConfig;
    if (this.applied) return this.applyMessage(this.applied.message, this.applied.raw);
    const problems = await this.deps.apply(localConfig);
    if (problems.length > 0) this.log.error({ problems }, 'reload: some sources could not start and kept their last good config');
    return this.stateValue;
  }

  private async applyMessage(message: PolicyMessage, raw: unknown): Promise<PolicyApplyState> {
    const merged = mergePolicy(this.localConfig, message.config);
    const problems = await this.deps.apply(merged);
    this.applied = { message, raw };
    this.stateValue = {
      policy_id: message.policy_id,
      applied_version: message.version,
      received_version: message.version,
      state: problems.length === 0 ? 'ok' : 'partial',
      errors: problems,
    };
    try {
      writePolicyCache(this.deps.dataDir, raw, problems.length > 0 ? this.deps.sourcesInForce() : null, problems);
    } catch (err) {
      this.log.error({ err: { message: (err as Error).message } }, 'caching the applied policy failed; after a restart without the control plane the agent would run its previous one');
    }
    if (problems.length === 0) this.log.info({ policy_id: message.policy_id, version: message.version }, 'policy applied');
    else this.log.error({ policy_id: message.policy_id, version: message.version, problems }, 'policy applied in part: the sources listed kept their last good configuration');
    return this.stateValue;
  }
}
