// createApp(deps): the whole HTTP surface as a Hono app. Tests drive it with app.request() (no
// sockets); `serve` hands app.fetch to @hono/node-server.

import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { matchedRoutes } from 'hono/route';
import { agentRoutes } from './agents.js';
import { auditRoutes } from './audit.js';
import { authenticate } from './auth.js';
import { commandRoutes } from './commands.js';
import { apiTokenRoutes } from './api-tokens.js';
import { enrollmentTokenRoutes } from './enrollment-tokens.js';
import { ApiError, toErrorResponse } from './errors.js';
import { messageRoutes } from './messages.js';
import { createMetrics, type HttpMetrics, type IngestCountersView } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { policyRoutes } from './policies.js';
import { parseBody, parseQuery, type AppDeps, type RouteSpec } from './route.js';

export const MAX_BODY_BYTES = 1024 * 1024;

export const ROUTES: readonly RouteSpec[] = [...enrollmentTokenRoutes, ...apiTokenRoutes, ...agentRoutes, ...commandRoutes, ...policyRoutes, ...messageRoutes, ...auditRoutes];

export interface AppOptions {
  readonly version?: string;
  /** Defaults to a registry of the app's own. */
  readonly metrics?: HttpMetrics;
  readonly ingestCounters?: () => IngestCountersView | undefined;
}

export function createApp(deps: AppDeps, options: AppOptions = {}): Hono {
  const app = new Hono();
  const log = deps.log.child({ component: 'http', id: 'api' });
  const metrics = options.metrics ?? createMetrics({ ...(options.ingestCounters ? { ingestCounters: options.ingestCounters } : {}) });
  const openapi = buildOpenApi(ROUTES, { version: options.version ?? '0.0.0' });

  app.use('*', async (c, next) => {
    const started = process.hrtime.bigint();
    await next();
    const route = matchedRoutes(c).filter((r) => r.method !== 'ALL').at(-1)?.path ?? 'unmatched';
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.observe(c.req.method, route, c.res.status, seconds);
    log.debug({ method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 1000) }, 'request');
  });
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError('payload_too_large', `the request body is over ${MAX_BODY_BYTES} bytes`);
      },
    }),
  );

  for (const r of ROUTES) {
    app.on(r.method.toUpperCase(), r.path.replace(/\{(\w+)\}/g, ':$1'), async (c: Context) => {
      const identity = r.auth === 'none' ? undefined : await authenticate(c, deps.store, r.auth);
      const body = r.body ? await parseBody(c, r.body) : undefined;
      const query = r.query ? parseQuery(c, r.query) : undefined;
      return r.handler({ c, deps, body, query, params: c.req.param() as Record<string, string>, identity });
    });
  }

  app.get('/livez', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const reasons: string[] = [];
    try {
      await deps.store.countApiTokens();
    } catch {
      reasons.push('the store is not open');
    }
    const ingest = deps.ingest?.health();
    if (!ingest) reasons.push('the gRPC ingest is not configured');
    else if (ingest.state !== 'running') reasons.push(`the gRPC ingest is ${ingest.state}: ${ingest.message}`);
    // The fleet bus does not carry data: a lost broker is a warning, ingest stays ready.
    const bus = deps.fleetBus?.health?.();
    const warnings = bus && bus.state !== 'listening' && bus.state !== 'connected' ? [`the MQTT fleet bus is ${bus.state}: ${bus.message}`] : [];
    if (reasons.length > 0) return c.json({ status: 'not_ready', reasons, ...(warnings.length > 0 ? { warnings } : {}) }, 503);
    return c.json({ status: 'ready', ...(warnings.length > 0 ? { warnings } : {}) });
  });
  app.get('/metrics', async (c) => {
    c.header('Content-Type', metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });
  app.get('/openapi.json', (c) => c.json(openapi));

  app.notFound((c) => toErrorResponse(new ApiError('not_found', `no route ${c.req.method} ${c.req.path}`), c, log));
  app.onError((err, c) => toErrorResponse(err, c, log));
  return app;
}
