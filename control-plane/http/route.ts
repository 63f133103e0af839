// The route table: each resource file declares its routes with defineRoute(); app.ts registers
// them and openapi.ts documents them, both from these same objects, so the schemas a request is
// validated with are the schemas the OpenAPI document shows.

import type { Context } from 'hono';
import { z } from 'zod';
import type { FleetControl } from '../fleet/index.js';
import type { Logger } from '../log.js';
import { MAX_PAGE_SIZE, type ApiRole, type ApiTokenIdentity, type MessageStore } from '../store/index.js';
import { ApiError, describeIssues } from './errors.js';

/** What the app needs from the rest of the control plane (injected, so tests pass their own). */
export interface AppDeps {
  readonly store: MessageStore;
  readonly log: Logger;
  /** The gRPC ingest: who is connected, where it listens, whether it runs. Absent in route tests that do not need it. */
  readonly ingest?: {
    connectedAgents(): ReadonlyMap<string, { readonly bufferId: string }>;
    address(): { host: string; port: number } | undefined;
    health(): { readonly state: string; readonly message: string };
    /** Ends an agent's open stream (after its credentials were revoked); optional for route tests. */
    disconnect?(agentId: string, reason: string): boolean;
  };
  /** The MQTT fleet bus as the HTTP API sees it: the URL agents get at enrollment, revocation, state. Absent in route tests that do not need it. */
  readonly fleetBus?: {
    /** The mqtt_url of an enrollment answer, given the host name the request came in on. */
    agentMqttUrl(requestHostname: string): string;
    forgetAgent(agentId: string): Promise<void>;
    /** Brings an external broker's credentials up to date with a new agent (Mosquitto files); optional. */
    agentEnrolled?(agentId: string): Promise<void>;
    health?(): { readonly state: string; readonly message: string };
  };
  /** The fleet service: presence, health, policy publishing, commands, rollout. Absent in route tests that do not need it. */
  readonly fleet?: FleetControl;
  /** ms since the epoch; injectable for tests. */
  readonly now?: () => number;
}

export interface RouteInput<B, Q> {
  readonly c: Context;
  readonly deps: AppDeps;
  readonly body: B;
  readonly query: Q;
  readonly params: Readonly<Record<string, string>>;
  /** Set on routes that need a token. */
  readonly identity: ApiTokenIdentity | undefined;
}

export interface RouteSpec<B extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType> {
  readonly method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI style: /api/v1/agents/{id} */
  readonly path: string;
  readonly summary: string;
  /** The least role the route needs, or 'none' (agent-facing enroll). */
  readonly auth: ApiRole | 'none';
  readonly body?: B;
  readonly query?: Q;
  /** Status of success and what it carries: a JSON schema, or a content type for raw bytes, or nothing (204). */
  readonly success: { readonly status: 200 | 201 | 204; readonly schema?: z.ZodType; readonly contentType?: string };
  /** The error codes this route can answer with besides the common ones, for the document. */
  readonly errors?: readonly number[];
  readonly handler: (input: RouteInput<z.output<B>, z.output<Q>>) => Promise<Response>;
}

export function defineRoute<B extends z.ZodType = z.ZodUndefined, Q extends z.ZodType = z.ZodUndefined>(spec: RouteSpec<B, Q>): RouteSpec {
  return spec as unknown as RouteSpec;
}

/** Reads a JSON body: empty means {}, anything but application/json is 415, bad JSON 400, then the schema (strict: unknown fields are 400). */
export async function parseBody(c: Context, schema: z.ZodType): Promise<unknown> {
  const text = await c.req.text();
  let raw: unknown = {};
  if (text.length > 0) {
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) throw new ApiError('unsupported_media_type', 'the request body must be JSON (Content-Type: application/json)');
    try {
      raw = JSON.parse(text);
    } catch {
      throw new ApiError('bad_json', 'the request body is not valid JSON');
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ApiError('invalid_request', describeIssues(parsed.error));
  return parsed.data;
}

export function parseQuery(c: Context, schema: z.ZodType): unknown {
  const raw: Record<string, string | string[]> = {};
  for (const [key, values] of Object.entries(c.req.queries())) raw[key] = values.length === 1 ? values[0]! : values;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ApiError('invalid_query', describeIssues(parsed.error));
  return parsed.data;
}

/** ISO 8601 from ms since the epoch (null stays null). */
/** Query parameters of every paged listing: `limit` (1 to MAX_PAGE_SIZE) and an opaque `cursor`. */
export const pagingQuery = {
  limit: z
    .string()
    .regex(/^\d{1,4}$/, `must be an integer from 1 to ${MAX_PAGE_SIZE}`)
    .transform(Number)
    .refine((n) => n >= 1 && n <= MAX_PAGE_SIZE, `must be an integer from 1 to ${MAX_PAGE_SIZE}`)
    .optional(),
  cursor: z.string().min(1).max(64).optional(),
};

export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}
