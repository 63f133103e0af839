// The control plane's Prometheus metrics, on a registry of its own (never prom-client's global one,
// so several apps in one test process do not collide): HTTP requests by route and status, and the
// gRPC ingest's counters read when scraped.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface IngestCountersView {
  readonly streamsOpen: number;
  readonly streamsTotal: number;
  readonly batches: number;
  readonly messagesStored: number;
  readonly duplicates: number;
  readonly bytesStored: number;
}

export interface HttpMetrics {
  readonly registry: Registry;
  observe(method: string, route: string, status: number, seconds: number): void;
}

export function createMetrics(options: { ingestCounters?: () => IngestCountersView | undefined; processMetrics?: boolean } = {}): HttpMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const requests = new Counter({ name: 'ferry_cp_http_requests_total', help: 'HTTP requests by method, route pattern and status', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const duration = new Histogram({
    name: 'ferry_cp_http_request_seconds',
    help: 'HTTP request duration by route pattern',
    labelNames: ['route'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const read = options.ingestCounters;
  if (read) {
    const fromIngest = (name: string, help: string, pick: (c: IngestCountersView) => number): void => {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const c = read();
          this.reset();
          if (c) this.inc(pick(c));
        },
      });
    };
    fromIngest('ferry_cp_ingest_streams_total', 'gRPC ingest streams accepted', (c) => c.streamsTotal);
    fromIngest('ferry_cp_ingest_batches_total', 'batches committed and acknowledged', (c) => c.batches);
    fromIngest('ferry_cp_ingest_messages_stored_total', 'messages stored (first delivery)', (c) => c.messagesStored);
    fromIngest('ferry_cp_ingest_messages_duplicate_total', 'resent messages already stored, ignored', (c) => c.duplicates);
    fromIngest('ferry_cp_ingest_bytes_stored_total', 'payload bytes stored', (c) => c.bytesStored);
    new Gauge({
      name: 'ferry_cp_ingest_streams_open',
      help: 'gRPC ingest streams open now',
      registers: [registry],
      collect() {
        this.set(read()?.streamsOpen ?? 0);
      },
    });
  }
  return {
    registry,
    observe(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ route }, seconds);
    },
  };
}
