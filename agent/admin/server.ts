// Admin HTTP for operators and supervisors, on loopback by default: /livez, /readyz, /metrics,
// /status. Built as a Hono app so routes are testable with app.request() without a socket.

import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import type { AgentMetrics } from './metrics.js';

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
  /** Worth knowing, not a reason to be unready (e.g. the uplink is down: store-and-forward goes on). */
  readonly warnings?: readonly string[];
}

export interface AdminDeps {
  readonly metrics: AgentMetrics;
  readonly status: () => unknown;
  readonly readiness: () => Readiness;
}

export function createAdminApp(deps: AdminDeps): Hono {
  const app = new Hono();
  app.get('/livez', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const r = deps.readiness();
    return c.json({ status: r.ready ? 'ready' : 'not_ready', reasons: r.reasons, warnings: r.warnings ?? [] }, r.ready ? 200 : 503);
  });
  app.get('/metrics', async (c) => {
    const body = await deps.metrics.registry.metrics();
    return c.body(body, 200, { 'content-type': deps.metrics.registry.contentType });
  });
  app.get('/status', (c) => c.json(deps.status() as object));
  app.notFound((c) => c.json({ error: { code: 'not_found', message: 'no such admin endpoint; try /livez, /readyz, /metrics or /status' } }, 404));
  return app;
}

export interface AdminServer {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

export function startAdminServer(app: Hono, host: string, port: number): Promise<AdminServer> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    const server: ServerType = serve({ fetch: app.fetch, hostname: host, port }, (info: AddressInfo) => {
      server.off('error', onError);
      resolve({
        address: { host: info.address, port: info.port },
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
    server.once('error', onError);
  });
}
