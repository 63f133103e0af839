// The control plane's HTTP API (Hono): one file per resource (enrollment tokens, agents, messages,
// audit), a route table they all declare into (route.ts) from which the app is wired and the
// OpenAPI document built, bearer-token roles (auth.ts), and one error-to-response place (errors.ts).

export { createApp, MAX_BODY_BYTES, ROUTES, type AppOptions } from './app.js';
export { ApiError, type ApiErrorCode } from './errors.js';
export { createMetrics, type FleetGaugesView, type HttpMetrics, type IngestCountersView } from './metrics.js';
export type { AppDeps } from './route.js';
