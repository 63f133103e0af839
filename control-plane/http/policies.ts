// Fleet policies: versioned documents (the agent file's `sources`, `buffer`, `uplink`, `log_level`)
// validated with the one schema in proto/policy. Every change makes a new version, is audited with
// a diff, and is published (retained) to each agent on the policy. viewer reads; admin changes.

import { z } from 'zod';
import { validatePolicy } from '../../proto/policy/index.js';
import { POLICY_ID_PATTERN, type PolicyRecord, type PolicyVersionRecord } from '../store/index.js';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { jsonDiff } from './json-diff.js';
import { defineRoute, iso, type AppDeps } from './route.js';

const configField = z.record(z.string(), z.unknown()).describe('The policy document: any of sources, buffer, uplink, log_level (the agent file\'s keys); validated with the fleet policy schema');

export const createPolicyBody = z
  .object({
    id: z.string().regex(POLICY_ID_PATTERN, 'must be 1-128 letters, digits, ".", "_" or "-"').optional().describe('Default: a random UUID'),
    name: z.string().min(1).max(128),
    config: configField,
  })
  .strict();

export const updatePolicyBody = z
  .object({
    name: z.string().min(1).max(128).optional(),
    config: configField.optional(),
  })
  .strict()
  .refine((b) => b.name !== undefined || b.config !== undefined, { message: 'give config, name, or both' });

export const policySummarySchema = z.object({
  id: z.string(),
  name: z.string(),
  latest_version: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});

export const policySchema = z.object({
  id: z.string(),
  name: z.string(),
  version: z.number().int().describe('The latest version'),
  config: z.record(z.string(), z.unknown()).describe('The latest version\'s document, as written'),
  created_at: z.string(),
  created_by: z.string(),
  updated_at: z.string(),
  version_created_at: z.string(),
  version_created_by: z.string(),
  agents: z.number().int().describe('Agents (not revoked) assigned to this policy'),
  changed: z.boolean().optional().describe('PUT only: false when the document and name equal the latest (no new version)'),
});

export const policyVersionSchema = z.object({
  policy_id: z.string(),
  version: z.number().int(),
  config: z.record(z.string(), z.unknown()),
  created_at: z.string(),
  created_by: z.string(),
});

export const rolloutSchema = z.object({
  policy_id: z.string(),
  latest_version: z.number().int(),
  agents_total: z.number().int(),
  applied_latest: z.number().int().describe('Agents running the latest version with every source applied'),
  behind: z.array(z.object({ agent_id: z.string(), applied_version: z.number().int().nullable(), online: z.boolean() })),
  failed: z
    .array(
      z.object({
        agent_id: z.string(),
        version: z.number().int().nullable().describe('The version that failed (the newest the agent received)'),
        applied_version: z.number().int().nullable(),
        state: z.string().describe('failed (nothing applied) or partial (some sources kept their last good config)'),
        errors: z.array(z.object({ path: z.string(), message: z.string() })),
      }),
    )
    .describe('Agents whose last apply failed, wholly or for some sources'),
  offline: z.array(z.object({ agent_id: z.string(), applied_version: z.number().int().nullable() })),
});

const policyListSchema = z.object({ items: z.array(policySummarySchema) });

/** Validates a policy document; 422 with every problem and its path otherwise. */
function checkPolicy(config: Record<string, unknown>): void {
  const checked = validatePolicy(config);
  if (!checked.ok) {
    throw new ApiError('policy_invalid', `the policy has ${checked.problems.length} problem(s): ${checked.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, {
      problems: checked.problems,
    });
  }
}

async function policyJson(deps: AppDeps, policy: PolicyRecord, version: PolicyVersionRecord): Promise<z.output<typeof policySchema>> {
  const agents = (await deps.store.listAgents()).filter((a) => a.policyId === policy.id && a.revokedAt === null).length;
  return {
    id: policy.id,
    name: policy.name,
    version: version.version,
    config: { ...version.config },
    created_at: iso(policy.createdAt)!,
    created_by: policy.createdBy,
    updated_at: iso(policy.updatedAt)!,
    version_created_at: iso(version.createdAt)!,
    version_created_by: version.createdBy,
    agents,
  };
}

/** Publishing happens after the answer: a slow or absent broker never holds up the API; the service logs failures. */
export function publishInBackground(deps: AppDeps, publishing: Promise<void> | undefined, what: Record<string, unknown>): void {
  publishing?.catch((err: unknown) => deps.log.warn({ component: 'http', ...what, err: { message: (err as Error).message } }, 'publishing the policy to agents failed; it is republished at the next change or restart'));
}

export const policyRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/v1/policies',
    summary: 'Every policy with its latest version number.',
    auth: 'viewer',
    success: { status: 200, schema: policyListSchema },
    handler: async ({ c, deps }) => {
      const out: z.output<typeof policyListSchema> = {
        items: (await deps.store.listPolicies()).map((p) => ({ id: p.id, name: p.name, latest_version: p.latestVersion, created_at: iso(p.createdAt)!, updated_at: iso(p.updatedAt)! })),
      };
      return c.json(out);
    },
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/policies',
    summary: 'Make a policy (version 1). A bad document is 422 policy_invalid with every problem and its path.',
    auth: 'admin',
    body: createPolicyBody,
    success: { status: 201, schema: policySchema },
    errors: [409, 422],
    handler: async ({ c, deps, body, identity }) => {
      checkPolicy(body.config);
      const actor = actorOf(identity!);
      const made = await deps.store.createPolicy({ ...(body.id !== undefined ? { id: body.id } : {}), name: body.name, config: body.config, createdBy: actor });
      await deps.store.audit({ actor, action: 'policy.created', target: `policy:${made.policy.id}`, details: { name: made.policy.name, version: 1, diff: jsonDiff({}, body.config) } });
      deps.log.info({ component: 'http', policy_id: made.policy.id, version: 1 }, 'policy created');
      return c.json(await policyJson(deps, made.policy, made.version), 201);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/policies/{id}',
    summary: 'A policy and its latest document.',
    auth: 'viewer',
    success: { status: 200, schema: policySchema },
    handler: async ({ c, deps, params }) => {
      const id = params.id ?? '';
      const [policy, version] = await Promise.all([deps.store.getPolicy(id), deps.store.getPolicyVersion(id)]);
      if (!policy || !version) throw new ApiError('not_found', 'no policy with this id');
      return c.json(await policyJson(deps, policy, version));
    },
  }),
  defineRoute({
    method: 'put',
    path: '/api/v1/policies/{id}',
    summary: 'Change a policy: a new document makes the next version, audited with a diff and published to every agent on it.',
    auth: 'admin',
    body: updatePolicyBody,
    success: { status: 200, schema: policySchema },
    errors: [422],
    handler: async ({ c, deps, params, body, identity }) => {
      const id = params.id ?? '';
      if (body.config !== undefined) checkPolicy(body.config);
      const actor = actorOf(identity!);
      const updated = await deps.store.updatePolicy(id, { ...(body.config !== undefined ? { config: body.config } : {}), ...(body.name !== undefined ? { name: body.name } : {}), updatedBy: actor });
      if (!updated) throw new ApiError('not_found', 'no policy with this id');
      const newVersion = updated.current.version !== updated.previous.version;
      const diff = [...jsonDiff({ name: updated.previousName }, { name: updated.policy.name }), ...jsonDiff(updated.previous.config, updated.current.config, 'config')];
      if (diff.length > 0) {
        await deps.store.audit({ actor, action: 'policy.updated', target: `policy:${id}`, details: { version: updated.current.version, previous_version: updated.previous.version, diff } });
        deps.log.info({ component: 'http', policy_id: id, version: updated.current.version, changes: diff.length }, 'policy updated');
      }
      if (newVersion) publishInBackground(deps, deps.fleet?.policyChanged(id), { policy_id: id, version: updated.current.version });
      return c.json({ ...(await policyJson(deps, updated.policy, updated.current)), changed: diff.length > 0 });
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/policies/{id}/versions/{version}',
    summary: 'One version of a policy, as it was written.',
    auth: 'viewer',
    success: { status: 200, schema: policyVersionSchema },
    handler: async ({ c, deps, params }) => {
      const version = /^\d{1,9}$/.test(params.version ?? '') ? Number(params.version) : NaN;
      const v = Number.isFinite(version) ? await deps.store.getPolicyVersion(params.id ?? '', version) : undefined;
      if (!v) throw new ApiError('not_found', 'no such policy version');
      const out: z.output<typeof policyVersionSchema> = { policy_id: v.policyId, version: v.version, config: { ...v.config }, created_at: iso(v.createdAt)!, created_by: v.createdBy };
      return c.json(out);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/policies/{id}/rollout',
    summary: 'How far the latest version has reached: agents that applied it, agents behind, agents whose apply failed (and why), agents offline.',
    auth: 'viewer',
    success: { status: 200, schema: rolloutSchema },
    errors: [503],
    handler: async ({ c, deps, params }) => {
      if (!deps.fleet) throw new ApiError('unavailable', 'the fleet service is not running');
      const rollout = await deps.fleet.rollout(params.id ?? '');
      if (!rollout) throw new ApiError('not_found', 'no policy with this id');
      return c.json(rollout);
    },
  }),
];
