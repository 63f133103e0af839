// The OpenAPI 3.1 document, built from the route table: the same zod schemas the routes validate
// requests with (and type their responses with) become the document's JSON Schemas.

import { z } from 'zod';
import { errorBodySchema } from './errors.js';
import type { RouteSpec } from './route.js';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

const COMMON_ERRORS: Record<number, string> = {
  400: 'bad JSON, unknown field, bad filter',
  401: 'missing or invalid token',
  403: 'the token lacks the role',
  404: 'not found',
  409: 'conflict with the current state',
  410: 'the enrollment token expired, was used up, or was revoked',
  413: 'request body too large',
  415: 'request body is not JSON',
  422: 'the document (policy, command args) is invalid: every problem with its path',
};

export function buildOpenApi(routes: readonly RouteSpec[], info: { version: string }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: jsonSchema(errorBodySchema, 'output') } } });
  for (const r of routes) {
    const parameters: unknown[] = [];
    for (const m of r.path.matchAll(/\{(\w+)\}/g)) parameters.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } });
    if (r.query) {
      const q = jsonSchema(r.query, 'input');
      const required = new Set((q.required as string[] | undefined) ?? []);
      for (const [name, schema] of Object.entries((q.properties as Record<string, JsonSchema> | undefined) ?? {})) {
        parameters.push({ name, in: 'query', required: required.has(name), schema, ...(typeof schema.description === 'string' ? { description: schema.description } : {}) });
      }
    }
    const codes = new Set<number>([400, ...(r.auth === 'none' ? [] : [401, 403]), ...(r.path.includes('{') ? [404] : []), ...(r.body ? [413, 415] : []), ...(r.errors ?? [])]);
    const responses: Record<string, unknown> = {
      [r.success.status]: r.success.schema
        ? { description: 'success', content: { 'application/json': { schema: jsonSchema(r.success.schema, 'output') } } }
        : r.success.contentType
          ? { description: 'success', content: { [r.success.contentType]: { schema: { type: 'string', format: 'binary' } } } }
          : { description: 'success, no content' },
    };
    for (const code of [...codes].sort()) responses[code] = errorResponse(COMMON_ERRORS[code] ?? 'error');
    (paths[r.path] ??= {})[r.method] = {
      summary: r.summary,
      operationId: `${r.method}${r.path.replace(/\{(\w+)\}/g, 'By_$1').replace(/[^A-Za-z0-9]+(.)?/g, (_m, ch: string | undefined) => (ch ?? '').toUpperCase())}`,
      security: r.auth === 'none' ? [] : [{ bearer: [] }],
      'x-ferry-role': r.auth,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: false, content: { 'application/json': { schema: jsonSchema(r.body, 'input') } } } } : {}),
      responses,
    };
  }
  const plain = (summary: string, type: string) => ({ get: { summary, security: [], responses: { 200: { description: summary, content: { [type]: { schema: { type: 'string' } } } } } } });
  paths['/livez'] = plain('The process is up.', 'application/json');
  paths['/readyz'] = plain('The store is open and the gRPC ingest listens (503 with reasons otherwise).', 'application/json');
  paths['/metrics'] = plain('Prometheus metrics.', 'text/plain');
  paths['/openapi.json'] = plain('This document.', 'application/json');
  return {
    openapi: '3.1.0',
    info: { title: 'Ferry control plane API', version: info.version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token (roles: viewer < operator < admin).' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
