// The fleet half of an agent in the API: its policy versions, presence, health and the latest
// status it published (DESIGN.md's agent shape), and PUT /api/v1/agents/{id} (move an agent to
// another policy: audited, published). agents.ts merges these fields into every agent it returns.

import { z } from 'zod';
import type { AgentRecord } from '../store/index.js';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { jsonDiff } from './json-diff.js';
import { publishInBackground } from './policies.js';
import { defineRoute, iso, type AppDeps } from './route.js';

const errorInfo = z.object({ code: z.string(), message: z.string(), at: z.string() }).nullable();

export const agentFleetShape = {
  policy_version: z.number().int().nullable().describe('The latest version of the agent\'s policy'),
  applied_policy_id: z.string().nullable().describe('The policy the agent reports running (differs from policy_id until it applies a move)'),
  applied_policy_version: z.number().int().nullable(),
  policy_apply: z
    .object({ state: z.string(), received_version: z.number().int().nullable(), errors: z.array(z.object({ path: z.string(), message: z.string() })) })
    .nullable()
    .describe('What the agent\'s last policy apply did: ok, partial (some sources kept their last good config), failed, none'),
  online: z.boolean().describe('MQTT presence: false after the last will, a clean stop, or 3 missed heartbeats'),
  health: z.enum(['healthy', 'degraded', 'offline']),
  health_reasons: z.array(z.string()),
  last_status_at: z.string().nullable(),
  version: z.string().nullable().describe('The agent\'s software version'),
  uptime_secs: z.number().nullable(),
  backlog: z
    .object({ count: z.number(), bytes: z.number(), oldest_age_secs: z.number().nullable(), max_bytes: z.number(), full: z.boolean() })
    .nullable()
    .describe('The agent\'s buffer: messages not yet acknowledged by the control plane'),
  uplink: z.object({ state: z.string(), last_error: errorInfo.optional() }).nullable(),
  sources: z.array(z.object({ id: z.string(), type: z.string(), state: z.string(), message: z.string().optional(), counters: z.record(z.string(), z.number()), last_error: errorInfo.optional() })),
  last_error: errorInfo,
  telemetry: z.object({ counters: z.record(z.string(), z.number()), at: z.string() }).nullable(),
};

export type AgentFleetFields = z.output<z.ZodObject<typeof agentFleetShape>>;

/** Latest version per policy id, for agent listings. */
export async function policyVersions(deps: AppDeps): Promise<ReadonlyMap<string, number>> {
  return new Map((await deps.store.listPolicies()).map((p) => [p.id, p.latestVersion]));
}

export function agentFleetFields(deps: AppDeps, agent: AgentRecord, versions: ReadonlyMap<string, number>): AgentFleetFields & { statusAt: number | null } {
  const state = deps.fleet?.agentState(agent.id);
  const s = state?.status ?? null;
  const b = s?.buffer;
  return {
    policy_version: versions.get(agent.policyId) ?? null,
    applied_policy_id: s?.policy?.policy_id ?? null,
    applied_policy_version: s?.policy?.applied_version ?? null,
    policy_apply: s?.policy ? { state: s.policy.state, received_version: s.policy.received_version, errors: s.policy.errors.map((e) => ({ path: e.path, message: e.message })) } : null,
    online: agent.revokedAt === null && (state?.online ?? false),
    health: agent.revokedAt !== null ? 'offline' : (state?.health ?? 'offline'),
    health_reasons: agent.revokedAt !== null ? ['revoked'] : state ? [...state.healthReasons] : ['the fleet service is not running'],
    last_status_at: iso(state?.statusAt),
    version: s?.version ?? null,
    uptime_secs: s?.uptime_secs ?? null,
    backlog: b ? { count: b.depth, bytes: b.bytes, oldest_age_secs: b.oldest_pending_age_secs, max_bytes: b.max_bytes, full: b.full } : null,
    uplink: s?.uplink ? { ...s.uplink } : null,
    sources: (s?.sources ?? []).map((src) => ({ ...src })),
    last_error: s?.last_error ?? null,
    telemetry: state?.telemetry ? { counters: { ...state.telemetry.counters }, at: iso(state.telemetry.at)! } : null,
    statusAt: state?.statusAt ?? null,
  };
}

export const assignPolicyBody = z.object({ policy_id: z.string().min(1).max(128) }).strict();

/** PUT /api/v1/agents/{id}; answers with the agent as GET does (the caller passes that renderer in, to keep one agent shape). */
export function assignPolicyRoute(render: (deps: AppDeps, agent: AgentRecord) => Promise<unknown>, responseSchema: z.ZodType) {
  return defineRoute({
    method: 'put',
    path: '/api/v1/agents/{id}',
    summary: 'Move an agent to another policy: audited, and the policy is published to it at once.',
    auth: 'admin',
    body: assignPolicyBody,
    success: { status: 200, schema: responseSchema },
    errors: [409],
    handler: async ({ c, deps, params, body, identity }) => {
      const id = params.id ?? '';
      const agent = await deps.store.getAgent(id);
      if (!agent) throw new ApiError('not_found', 'no agent with this id');
      if (agent.revokedAt !== null) throw new ApiError('conflict', 'the agent is revoked');
      if (!(await deps.store.getPolicy(body.policy_id))) throw new ApiError('not_found', `no policy with id "${body.policy_id}"`);
      const previous = await deps.store.setAgentPolicy(id, body.policy_id);
      if (previous === undefined) throw new ApiError('not_found', 'no agent with this id');
      if (previous !== body.policy_id) {
        await deps.store.audit({ actor: actorOf(identity!), action: 'agent.policy_assigned', target: `agent:${id}`, details: { diff: jsonDiff({ policy_id: previous }, { policy_id: body.policy_id }) } });
        deps.log.info({ component: 'http', agent_id: id, policy_id: body.policy_id, previous_policy_id: previous }, 'agent moved to another policy');
        publishInBackground(deps, deps.fleet?.agentPolicyChanged(id), { agent_id: id, policy_id: body.policy_id });
      }
      return c.json(await render(deps, (await deps.store.getAgent(id))!));
    },
  });
}
