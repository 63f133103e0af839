// Admin surface of the agent: health, readiness, Prometheus metrics and the status document.

export { AgentMetrics } from './metrics.js';
export { createAdminApp, startAdminServer, type AdminDeps, type AdminServer, type Readiness } from './server.js';
