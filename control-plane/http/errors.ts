// The one place an error becomes an HTTP response: every handler and middleware throws, and
// toErrorResponse() picks the status and the stable code. Messages say what was wrong with the
// request, never message content, tokens or secrets.

import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import { ControlPlaneError } from '../errors.js';
import type { Logger } from '../log.js';

export type ApiErrorCode =
  | 'bad_json'
  | 'invalid_request'
  | 'invalid_query'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'policy_invalid'
  | 'command_args_invalid'
  | 'enrollment_token_invalid'
  | 'enrollment_token_expired'
  | 'enrollment_token_used_up'
  | 'enrollment_token_revoked'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'payload_corrupt'
  | 'unavailable'
  | 'internal';

const STATUS: Record<ApiErrorCode, ContentfulStatusCode> = {
  bad_json: 400,
  invalid_request: 400,
  invalid_query: 400,
  unauthenticated: 401,
  enrollment_token_invalid: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  policy_invalid: 422,
  command_args_invalid: 422,
  enrollment_token_expired: 410,
  enrollment_token_used_up: 410,
  enrollment_token_revoked: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  payload_corrupt: 500,
  internal: 500,
  unavailable: 503,
};

/** One problem of a rejected document (a policy, command args), by path ("sources[1].listen"). */
export interface ApiProblem {
  readonly path: string;
  readonly message: string;
}

export class ApiError extends Error {
  /** Every problem found, when the request carried a document (policy_invalid, command_args_invalid). */
  readonly problems: readonly ApiProblem[] | undefined;

  constructor(
    readonly code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown; problems?: readonly ApiProblem[] },
  ) {
    super(message, options);
    this.name = 'ApiError';
    this.problems = options?.problems;
  }

  get status(): ContentfulStatusCode {
    return STATUS[this.code];
  }
}

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    problems: z.array(z.object({ path: z.string(), message: z.string() })).optional().describe('policy_invalid, command_args_invalid: every problem, by path'),
  }),
});

/** "field.path: problem; other: problem" from a zod error, in the order zod found them. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(body)'}: ${i.message}`).join('; ');
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ControlPlaneError) {
    switch (err.code) {
      case 'cursor_invalid':
      case 'query_invalid':
        return new ApiError('invalid_query', err.message, { cause: err });
      case 'payload_corrupt':
      case 'key_missing':
        return new ApiError('payload_corrupt', 'the stored payload failed its integrity check; see the control plane log', { cause: err });
      case 'store_closed':
        return new ApiError('unavailable', 'the control plane is shutting down', { cause: err });
      case 'policy_unknown':
        return new ApiError('not_found', err.message, { cause: err });
      case 'policy_exists':
        return new ApiError('conflict', err.message, { cause: err });
      case 'fleet_bus_unavailable':
        return new ApiError('unavailable', err.message, { cause: err });
      default:
        return new ApiError('internal', 'internal error; see the control plane log', { cause: err });
    }
  }
  if (err instanceof HTTPException && err.status === 413) return new ApiError('payload_too_large', 'request body is too large', { cause: err });
  return new ApiError('internal', 'internal error; see the control plane log', { cause: err });
}

export function toErrorResponse(err: unknown, c: Context, log: Logger): Response {
  const apiError = toApiError(err);
  if (apiError.status >= 500) {
    const cause = apiError.cause ?? err;
    log.error({ err: { name: (cause as Error).name, code: (cause as { code?: unknown }).code, message: (cause as Error).message }, path: c.req.path }, 'request failed');
  }
  if (apiError.code === 'unauthenticated') c.header('WWW-Authenticate', 'Bearer realm="ferry"');
  return c.json({ error: { code: apiError.code, message: apiError.message, ...(apiError.problems ? { problems: apiError.problems } : {}) } }, apiError.status);
}
