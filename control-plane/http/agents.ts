// Agents: enrollment (agent-facing, the enrollment token in the body), the fleet listing with
// delivery state, and revocation.

import { z } from 'zod';
import type { AgentBufferStats, AgentRecord } from '../store/index.js';
import { agentFleetFields, agentFleetShape, assignPolicyRoute, policyVersions } from './agent-fleet.js';
import { actorOf } from './auth.js';
import { publishInBackground } from './policies.js';
import { ApiError } from './errors.js';
import { defineRoute, iso, type AppDeps } from './route.js';

export const enrollBody = z
  .object({
    token: z.string().min(1).max(256),
    name: z.string().min(1).max(128).optional(),
  })
  .strict();

export const enrollResponseSchema = z.object({
  agent_id: z.string(),
  secret: z.string().describe('Shown once; only a hash is kept.'),
  grpc_target: z.string().describe('host:port of the gRPC ingest, as this request reached the control plane'),
  mqtt_url: z.string().optional().describe('Where the agent connects to the MQTT fleet bus (username = agent id, password = secret); absent when the control plane runs without one'),
});

const bufferSchema = z.object({
  buffer_id: z.string(),
  committed_seq: z.number().int(),
  messages_received: z.number().int(),
  bytes_received: z.number().int(),
  last_commit_at: z.string(),
});

export const agentSchema = z.object({
  id: z.string(),
  name: z.string(),
  policy_id: z.string(),
  created_at: z.string(),
  revoked: z.boolean(),
  last_seen: z.string().nullable(),
  stream_connected: z.boolean(),
  committed_seq: z.record(z.string(), z.number().int()).describe('per buffer id'),
  messages_received: z.number().int(),
  bytes_received: z.number().int(),
  buffers: z.array(bufferSchema),
  // Policy versions, presence, health and the latest status (agent-fleet.ts).
  ...agentFleetShape,
});

export const agentListSchema = z.object({ items: z.array(agentSchema) });

const ENROLL_FAILURES = {
  unknown: ['enrollment_token_invalid', 'the enrollment token is not valid'],
  expired: ['enrollment_token_expired', 'the enrollment token has expired; ask for a new one'],
  used_up: ['enrollment_token_used_up', 'the enrollment token has been used as many times as allowed; ask for a new one'],
  revoked: ['enrollment_token_revoked', 'the enrollment token has been revoked; ask for a new one'],
} as const;

function toAgentJson(deps: AppDeps, agent: AgentRecord, buffers: readonly AgentBufferStats[], versions: ReadonlyMap<string, number>): z.output<typeof agentSchema> {
  const connected = deps.ingest?.connectedAgents().has(agent.id) ?? false;
  const lastCommit = buffers.reduce<number | null>((m, b) => (m === null || b.lastCommitAt > m ? b.lastCommitAt : m), null);
  const { statusAt, ...fleet } = agentFleetFields(deps, agent, versions);
  const seen = [agent.lastSeen, lastCommit, statusAt, connected ? (deps.now ?? Date.now)() : null].filter((x): x is number => x !== null);
  return {
    ...fleet,
    id: agent.id,
    name: agent.name,
    policy_id: agent.policyId,
    created_at: iso(agent.createdAt)!,
    revoked: agent.revokedAt !== null,
    last_seen: seen.length > 0 ? iso(Math.max(...seen)) : null,
    stream_connected: connected,
    committed_seq: Object.fromEntries(buffers.map((b) => [b.bufferId, b.committedSeq])),
    messages_received: buffers.reduce((n, b) => n + b.messages, 0),
    bytes_received: buffers.reduce((n, b) => n + b.bytes, 0),
    buffers: buffers.map((b) => ({ buffer_id: b.bufferId, committed_seq: b.committedSeq, messages_received: b.messages, bytes_received: b.bytes, last_commit_at: iso(b.lastCommitAt)! })),
  };
}

/** host:port of the gRPC listener as the caller reaches this control plane: the Host it used, the gRPC port. */
function grpcTarget(deps: AppDeps, url: string): string {
  const port = deps.ingest?.address()?.port;
  if (port === undefined) throw new ApiError('unavailable', 'the gRPC ingest is not listening');
  return `${new URL(url).hostname}:${port}`;
}

async function renderAgent(deps: AppDeps, agent: AgentRecord): Promise<z.output<typeof agentSchema>> {
  const [buffers, versions] = await Promise.all([deps.store.bufferStats(agent.id), policyVersions(deps)]);
  return toAgentJson(deps, agent, buffers, versions);
}

export const agentRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/agents/enroll',
    summary: 'Enroll an agent with an enrollment token; returns its id and secret (shown once) and where to stream.',
    auth: 'none',
    body: enrollBody,
    success: { status: 201, schema: enrollResponseSchema },
    errors: [401, 410],
    handler: async ({ c, deps, body }) => {
      const target = grpcTarget(deps, c.req.url);
      const check = await deps.store.consumeEnrollmentToken(body.token);
      if (check.status !== 'ok') {
        const [code, message] = ENROLL_FAILURES[check.status];
        deps.log.warn({ component: 'http', reason: check.status }, 'enrollment refused');
        throw new ApiError(code, message);
      }
      const created = await deps.store.createAgent({ name: body.name ?? 'agent', policyId: check.policyId });
      // An external Mosquitto learns the new credentials before the agent learns them.
      await deps.fleetBus?.agentEnrolled?.(created.id);
      await deps.store.audit({ actor: `enrollment_token:${check.tokenId}`, action: 'agent.enrolled', target: `agent:${created.id}`, details: { name: body.name ?? 'agent', policy_id: check.policyId } });
      deps.log.info({ component: 'http', agent_id: created.id, policy_id: check.policyId }, 'agent enrolled');
      // Its policy is retained on its topic before it first connects.
      publishInBackground(deps, deps.fleet?.agentPolicyChanged(created.id), { agent_id: created.id, policy_id: check.policyId });
      const mqttUrl = deps.fleetBus?.agentMqttUrl(new URL(c.req.url).hostname);
      const out: z.output<typeof enrollResponseSchema> = { agent_id: created.id, secret: created.secret, grpc_target: target, ...(mqttUrl !== undefined ? { mqtt_url: mqttUrl } : {}) };
      return c.json(out, 201);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/agents',
    summary: 'Every agent with its delivery state.',
    auth: 'viewer',
    success: { status: 200, schema: agentListSchema },
    handler: async ({ c, deps }) => {
      const [agents, stats, versions] = await Promise.all([deps.store.listAgents(), deps.store.bufferStats(), policyVersions(deps)]);
      const byAgent = new Map<string, AgentBufferStats[]>();
      for (const s of stats) byAgent.set(s.agentId, [...(byAgent.get(s.agentId) ?? []), s]);
      const out: z.output<typeof agentListSchema> = { items: agents.map((a) => toAgentJson(deps, a, byAgent.get(a.id) ?? [], versions)) };
      return c.json(out);
    },
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/agents/{id}',
    summary: 'One agent with its delivery state.',
    auth: 'viewer',
    success: { status: 200, schema: agentSchema },
    handler: async ({ c, deps, params }) => {
      const id = params.id ?? '';
      const agent = await deps.store.getAgent(id);
      if (!agent) throw new ApiError('not_found', 'no agent with this id');
      return c.json(await renderAgent(deps, agent));
    },
  }),
  assignPolicyRoute(renderAgent, agentSchema),
  defineRoute({
    method: 'post',
    path: '/api/v1/agents/{id}/revoke',
    summary: "Revoke an agent's credentials: an open stream ends at once and every new one is refused.",
    auth: 'admin',
    success: { status: 200, schema: agentSchema },
    errors: [409],
    handler: async ({ c, deps, params, identity }) => {
      const id = params.id ?? '';
      const before = await deps.store.getAgent(id);
      if (!before) throw new ApiError('not_found', 'no agent with this id');
      if (before.revokedAt !== null) throw new ApiError('conflict', 'the agent is already revoked');
      await deps.store.revokeAgent(id);
      // A stream opened before the revocation ends now, not at its next reconnect.
      const disconnected = deps.ingest?.disconnect?.(id, 'agent credentials revoked; re-enroll this agent') ?? false;
      // Its MQTT connection ends and its retained policy/status go too (the broker refuses it from now on).
      await deps.fleetBus?.forgetAgent(id).catch((err: unknown) => deps.log.warn({ component: 'http', agent_id: id, err: { message: (err as Error).message } }, 'revoked, but the fleet bus could not forget the agent'));
      await deps.store.audit({ actor: actorOf(identity!), action: 'agent.revoked', target: `agent:${id}`, details: { stream_ended: disconnected } });
      const agent = (await deps.store.getAgent(id))!;
      return c.json(await renderAgent(deps, agent));
    },
  }),
];
