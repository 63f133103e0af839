// Enrollment tokens: an admin makes one (bound to a policy, expiring, a number of uses), hands it
// to whoever installs agents, and may revoke it. The token is shown once, in the creation response.

import { z } from 'zod';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { defineRoute, iso } from './route.js';

const MAX_TTL_SECS = 365 * 24 * 60 * 60;

export const createEnrollmentTokenBody = z
  .object({
    policy_id: z.string().min(1).max(128).optional(),
    expires_in_secs: z.number().int().min(1).max(MAX_TTL_SECS).optional(),
    max_uses: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();

export const enrollmentTokenSchema = z.object({
  token: z.string().describe('Shown once; only a hash is kept.'),
  id: z.string(),
  policy_id: z.string(),
  expires_at: z.string().describe('ISO 8601'),
  max_uses: z.number().int(),
});

export const enrollmentTokenRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/enrollment-tokens',
    summary: 'Make an enrollment token (defaults: the default policy, 24 h, 1 use).',
    auth: 'admin',
    body: createEnrollmentTokenBody,
    success: { status: 201, schema: enrollmentTokenSchema },
    handler: async ({ c, deps, body, identity }) => {
      const t = await deps.store.createEnrollmentToken({
        createdBy: actorOf(identity!),
        ...(body.policy_id !== undefined ? { policyId: body.policy_id } : {}),
        ...(body.expires_in_secs !== undefined ? { expiresInSecs: body.expires_in_secs } : {}),
        ...(body.max_uses !== undefined ? { maxUses: body.max_uses } : {}),
      });
      await deps.store.audit({ actor: actorOf(identity!), action: 'enrollment_token.created', target: `enrollment_token:${t.id}`, details: { policy_id: t.policyId, max_uses: t.maxUses, expires_at: iso(t.expiresAt) } });
      const out: z.output<typeof enrollmentTokenSchema> = { token: t.token, id: t.id, policy_id: t.policyId, expires_at: iso(t.expiresAt)!, max_uses: t.maxUses };
      return c.json(out, 201);
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/api/v1/enrollment-tokens/{id}',
    summary: 'Revoke an enrollment token (agents already enrolled with it keep their credentials).',
    auth: 'admin',
    success: { status: 204 },
    handler: async ({ c, deps, params, identity }) => {
      const id = params.id ?? '';
      if (!(await deps.store.revokeEnrollmentToken(id))) throw new ApiError('not_found', 'no enrollment token with this id');
      await deps.store.audit({ actor: actorOf(identity!), action: 'enrollment_token.revoked', target: `enrollment_token:${id}` });
      return c.body(null, 204);
    },
  }),
];
