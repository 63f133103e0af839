// API tokens: an admin makes bearer tokens for people and tools, each with a role (viewer reads,
// operator also reads payloads and runs commands, admin manages everything), and may revoke them.
// The token is shown once, in the creation response; only its hash is kept.

import { z } from 'zod';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { defineRoute } from './route.js';

const role = z.enum(['viewer', 'operator', 'admin']);

export const createApiTokenBody = z
  .object({
    name: z.string().min(1).max(128),
    role,
  })
  .strict();

export const apiTokenSchema = z.object({
  token: z.string().describe('Shown once; only a hash is kept.'),
  id: z.string(),
  name: z.string(),
  role,
});

export const apiTokenRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/api-tokens',
    summary: 'Make an API token with a role (viewer, operator or admin).',
    auth: 'admin',
    body: createApiTokenBody,
    success: { status: 201, schema: apiTokenSchema },
    handler: async ({ c, deps, body, identity }) => {
      const t = await deps.store.createApiToken({ name: body.name, role: body.role });
      await deps.store.audit({ actor: actorOf(identity!), action: 'api_token.created', target: `api_token:${t.id}`, details: { name: t.name, role: t.role } });
      const out: z.output<typeof apiTokenSchema> = { token: t.token, id: t.id, name: t.name, role: t.role };
      return c.json(out, 201);
    },
  }),
  defineRoute({
    method: 'delete',
    path: '/api/v1/api-tokens/{id}',
    summary: 'Revoke an API token: its next request is refused.',
    auth: 'admin',
    success: { status: 204 },
    handler: async ({ c, deps, params, identity }) => {
      const id = params.id ?? '';
      if (!(await deps.store.revokeApiToken(id))) throw new ApiError('not_found', 'no API token with this id');
      await deps.store.audit({ actor: actorOf(identity!), action: 'api_token.revoked', target: `api_token:${id}` });
      return c.body(null, 204);
    },
  }),
];
