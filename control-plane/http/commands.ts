// Commands to one agent: ping, reload, restart, flush, set-log-level. Sent at QoS 1 with an id and
// an expiry; the agent runs each id at most once and answers. operator sends (audited); viewer reads.

import { z } from 'zod';
import { COMMAND_STATUSES, COMMAND_TYPES, commandArgsSchemas, commandTypeSchema } from '../../proto/fleet/index.js';
import { toProblem } from '../../proto/policy/index.js';
import type { CommandRecord } from '../store/index.js';
import { actorOf } from './auth.js';
import { ApiError } from './errors.js';
import { defineRoute, iso, pagingQuery } from './route.js';

export const DEFAULT_COMMAND_TTL_SECS = 300;
const MAX_COMMAND_TTL_SECS = 24 * 60 * 60;

export const commandBody = z
  .object({
    type: commandTypeSchema.describe(`One of ${COMMAND_TYPES.join(', ')}`),
    args: z.record(z.string(), z.unknown()).optional().describe('set-log-level: {level}; the others take none'),
    expires_in_secs: z.number().int().min(1).max(MAX_COMMAND_TTL_SECS).optional().describe(`Default ${DEFAULT_COMMAND_TTL_SECS}; the agent refuses the command after this`),
  })
  .strict();

export const commandSchema = z.object({
  id: z.string(),
  agent_id: z.string(),
  type: z.string(),
  args: z.record(z.string(), z.unknown()),
  status: z.enum(COMMAND_STATUSES),
  result: z.record(z.string(), z.unknown()).nullable().describe("The agent's result detail (ping: {pong_at}, flush: {pending}...), null until it answers"),
  error: z.object({ code: z.string(), message: z.string() }).nullable().describe('Why it failed or was refused'),
  issued_by: z.string(),
  issued_at: z.string(),
  expires_at: z.string(),
  finished_at: z.string().nullable(),
});

const commandPageSchema = z.object({ items: z.array(commandSchema), next_cursor: z.string().nullable() });

function commandJson(c: CommandRecord): z.output<typeof commandSchema> {
  const outcome = c.result ?? {};
  const result = outcome.result;
  const error = outcome.error as { code: string; message: string } | undefined;
  return {
    id: c.id,
    agent_id: c.agentId,
    type: c.type,
    args: { ...c.args },
    status: c.status,
    result: typeof result === 'object' && result !== null ? (result as Record<string, unknown>) : null,
    error: error ? { code: String(error.code), message: String(error.message) } : c.status === 'expired' && c.result === null ? { code: 'expired', message: 'no result before expires_at' } : null,
    issued_by: c.issuedBy,
    issued_at: iso(c.issuedAt)!,
    expires_at: iso(c.expiresAt)!,
    finished_at: iso(c.finishedAt),
  };
}

export const commandRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/agents/{id}/commands',
    summary: 'Send a command to an agent (QoS 1, with an id and an expiry); poll GET …/commands/{cmd} for its result.',
    auth: 'operator',
    body: commandBody,
    success: { status: 201, schema: commandSchema },
    errors: [409, 422, 503],
    handler: async ({ c, deps, params, body, identity }) => {
      const agentId = params.id ?? '';
      const args = body.args ?? {};
      const checked = commandArgsSchemas[body.type].safeParse(args);
      if (!checked.success) {
        const problems = checked.error.issues.map(toProblem).map((p) => ({ path: p.path === '(root)' ? 'args' : `args.${p.path}`, message: p.message }));
        throw new ApiError('command_args_invalid', `bad args for ${body.type}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, { problems });
      }
      const agent = await deps.store.getAgent(agentId);
      if (!agent) throw new ApiError('not_found', 'no agent with this id');
      if (agent.revokedAt !== null) throw new ApiError('conflict', 'the agent is revoked');
      if (!deps.fleet) throw new ApiError('unavailable', 'the fleet service is not running');
      const actor = actorOf(identity!);
      const expiresInSecs = body.expires_in_secs ?? DEFAULT_COMMAND_TTL_SECS;
      const record = await deps.fleet.issueCommand({ agentId, type: body.type, args: checked.data, expiresInSecs, issuedBy: actor });
      await deps.store.audit({ actor, action: 'command.issued', target: `agent:${agentId}`, details: { command_id: record.id, type: record.type, args: record.args, expires_at: iso(record.expiresAt) } });
      return c.json(commandJson(record), 201);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/agents/{id}/commands/{cmd}',
    summary: 'One command: pending, succeeded, failed or expired, with the result.',
    auth: 'viewer',
    success: { status: 200, schema: commandSchema },
    handler: async ({ c, deps, params }) => {
      const record = await deps.store.getCommand(params.id ?? '', params.cmd ?? '');
      if (!record) throw new ApiError('not_found', 'no command with this id for this agent');
      return c.json(commandJson(record));
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/agents/{id}/commands',
    summary: "An agent's commands, newest first, cursor-paged.",
    auth: 'viewer',
    query: z.object({ ...pagingQuery }).strict(),
    success: { status: 200, schema: commandPageSchema },
    handler: async ({ c, deps, params, query }) => {
      const agentId = params.id ?? '';
      if (!(await deps.store.getAgent(agentId))) throw new ApiError('not_found', 'no agent with this id');
      const page = await deps.store.listCommands(agentId, { ...(query.limit !== undefined ? { limit: query.limit } : {}), ...(query.cursor !== undefined ? { cursor: query.cursor } : {}) });
      const out: z.output<typeof commandPageSchema> = { items: page.items.map(commandJson), next_cursor: page.nextCursor };
      return c.json(out);
    },
  }),
];
