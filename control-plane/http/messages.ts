// Messages: metadata listings with filters and cursor paging, and the exact payload bytes. Every
// payload read is written to the audit log (who, when, which message) before a byte is sent.

import { z } from 'zod';
import type { MessageSummary } from '../store/index.js';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { defineRoute, iso, pagingQuery } from './route.js';

/** ISO 8601 with a zone, or integer milliseconds since the epoch. */
const instant = z
  .string()
  .transform((v, ctx) => {
    const ms = /^\d{1,16}$/.test(v) ? Number(v) : /^\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})$/.test(v) ? Date.parse(v) : NaN;
    if (!Number.isSafeInteger(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 time with a zone (2026-01-31T12:00:00Z) or milliseconds since the epoch' });
      return z.NEVER;
    }
    return ms;
  })
  .meta({ description: 'ISO 8601 time with a zone, or milliseconds since the epoch' });

export const messageQuery = z
  .object({
    agent: z.string().min(1).max(128).optional(),
    source: z.string().min(1).max(64).optional(),
    type: z
      .string()
      .regex(/^[A-Za-z0-9]{1,8}(?:\^[A-Za-z0-9]{1,8})?$/, 'must be a message type (ADT) or type^trigger (ADT^A01)')
      .optional(),
    control_id: z.string().min(1).max(199).optional(),
    since: instant.optional().describe('received at or after'),
    until: instant.optional().describe('received before'),
    ...pagingQuery,
  })
  .strict();

export const messageItemSchema = z.object({
  id: z.string(),
  agent_id: z.string(),
  source_id: z.string(),
  seq: z.number().int(),
  control_id: z.string(),
  message_type: z.string().describe('type^trigger, e.g. ADT^A01'),
  received_at: z.string(),
  size: z.number().int(),
  sha256: z.string().describe('hex'),
});

export const messagePageSchema = z.object({ items: z.array(messageItemSchema), next_cursor: z.string().nullable() });

function toItem(m: MessageSummary): z.output<typeof messageItemSchema> {
  return {
    id: m.id,
    agent_id: m.agentId,
    source_id: m.sourceId,
    seq: m.seq,
    control_id: m.controlId,
    message_type: m.triggerEvent ? `${m.messageType}^${m.triggerEvent}` : m.messageType,
    received_at: iso(m.receivedAt)!,
    size: m.size,
    sha256: m.sha256,
  };
}

export const HL7_CONTENT_TYPE = 'application/hl7-v2';

export const messageRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/v1/messages',
    summary: 'Message metadata (never content), filtered, oldest first, cursor-paged.',
    auth: 'viewer',
    query: messageQuery,
    success: { status: 200, schema: messagePageSchema },
    handler: async ({ c, deps, query }) => {
      if (query.since !== undefined && query.until !== undefined && query.until < query.since) throw new ApiError('invalid_query', 'until is before since');
      const page = await deps.store.listMessages({
        ...(query.agent !== undefined ? { agent: query.agent } : {}),
        ...(query.source !== undefined ? { source: query.source } : {}),
        ...(query.type !== undefined ? { type: query.type } : {}),
        ...(query.control_id !== undefined ? { controlId: query.control_id } : {}),
        ...(query.since !== undefined ? { since: query.since } : {}),
        ...(query.until !== undefined ? { until: query.until } : {}),
        ...(query.limit !== undefined ? { limit: query.limit } : {}),
        ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
      });
      const out: z.output<typeof messagePageSchema> = { items: page.items.map(toItem), next_cursor: page.nextCursor };
      return c.json(out);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/messages/{id}/payload',
    summary: 'The exact bytes received. Every read is recorded in the audit log.',
    auth: 'operator',
    success: { status: 200, contentType: HL7_CONTENT_TYPE },
    handler: async ({ c, deps, params, identity }) => {
      const id = params.id ?? '';
      const payload = await deps.store.getPayload(id);
      if (!payload) throw new ApiError('not_found', 'no message with this id');
      // Recorded before the bytes leave: a read that cannot be audited does not happen.
      await deps.store.audit({ actor: actorOf(identity!), action: 'message.payload.read', target: `message:${id}`, details: { token_name: identity!.name, size: payload.length } });
      c.header('Content-Type', HL7_CONTENT_TYPE);
      c.header('X-Content-Type-Options', 'nosniff');
      c.header('Cache-Control', 'no-store');
      return c.body(new Uint8Array(payload.buffer, payload.byteOffset, payload.length) as Uint8Array<ArrayBuffer>, 200);
    },
  }),
];
