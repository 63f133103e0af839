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

export interface FleetGaugesView {
  readonly agents: Readonly<Record<string, number>>;
  readonly health: Readonly<Record<string, number>>;
  readonly commands: Readonly<Record<string, number>>;
}

export interface HttpMetrics {
  readonly registry: Registry;
  observe(method: string, route: string, status: number, seconds: number): void;
}

export function createMetrics(
  options: {
    ingestCounters?: () => IngestCountersView | undefined;
    processMetrics?: boolean;
    fleetBusCounters?: () => Readonly<Record<string, number>> | undefined;
    /** The fleet service's gauges (agents online/offline and by health, commands by status), read when scraped. */
    fleetGauges?: () => Promise<FleetGaugesView>;
    /** When the served TLS certificate expires (unix seconds): renewals are alerted on, not discovered by agents. */
    tlsCertExpiry?: number;
  } = {},
): HttpMetrics {
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
  const bus = options.fleetBusCounters;
  if (bus) {
    // One family, a label per bus counter (messages_in, connections_refused, ...): the embedded and
    // external buses count different things, and the set may grow without touching this file.
    new Gauge({
      name: 'ferry_cp_fleet_bus',
      help: 'MQTT fleet bus counters since start (messages in/out/invalid, connections and publishes/subscribes refused, connected clients)',
      labelNames: ['counter'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [counter, value] of Object.entries(bus() ?? {})) this.set({ counter }, value);
      },
    });
  }
  const fleet = options.fleetGauges;
  if (fleet) {
    // One read per scrape feeds all three families.
    let pending: Promise<FleetGaugesView> | undefined;
    const read = (): Promise<FleetGaugesView> => {
      pending ??= fleet().finally(() => {
        pending = undefined;
      });
      return pending;
    };
    const family = (name: string, help: string, label: string, pick: (v: FleetGaugesView) => Readonly<Record<string, number>>): void => {
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers: [registry],
        async collect() {
          const values = pick(await read());
          this.reset();
          for (const [key, value] of Object.entries(values)) this.set({ [label]: key }, value);
        },
      });
    };
    family('ferry_cp_fleet_agents', 'Agents (not revoked) by presence', 'state', (v) => v.agents);
    family('ferry_cp_fleet_agents_health', 'Agents (not revoked) by health', 'health', (v) => v.health);
    family('ferry_cp_fleet_commands', 'Commands by status', 'status', (v) => v.commands);
  }
  if (options.tlsCertExpiry !== undefined) {
    new Gauge({ name: 'ferry_cp_tls_cert_expiry_timestamp_seconds', help: 'When the TLS certificate served on HTTP and gRPC expires (unix time)', registers: [registry] }).set(options.tlsCertExpiry);
  }
  return {
    registry,
    observe(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ route }, seconds);
    },
  };
}
