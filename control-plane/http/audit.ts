// The audit log: every change and every payload read, newest first.

import { z } from 'zod';
import { defineRoute, iso, pagingQuery } from './route.js';

export const auditQuery = z
  .object({ ...pagingQuery })
  .strict();

export const auditEntrySchema = z.object({
  id: z.string(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  target: z.string(),
  details: z.record(z.string(), z.unknown()),
});

export const auditPageSchema = z.object({ items: z.array(auditEntrySchema), next_cursor: z.string().nullable() });

export const auditRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/v1/audit',
    summary: 'The audit log, newest first, cursor-paged.',
    auth: 'admin',
    query: auditQuery,
    success: { status: 200, schema: auditPageSchema },
    handler: async ({ c, deps, query }) => {
      const page = await deps.store.listAudit({ ...(query.limit !== undefined ? { limit: query.limit } : {}), ...(query.cursor !== undefined ? { cursor: query.cursor } : {}) });
      const out: z.output<typeof auditPageSchema> = {
        items: page.items.map((e) => ({ id: e.id, at: iso(e.at)!, actor: e.actor, action: e.action, target: e.target, details: { ...e.details } })),
        next_cursor: page.nextCursor,
      };
      return c.json(out);
    },
  }),
];
