// Wiring and lifecycle of the control-plane process: store, MQTT fleet bus, gRPC ingest and HTTP
// API in one process. start() opens them in that order; stop() closes HTTP, drains gRPC
// (tryShutdown, then force at the deadline), closes the fleet bus, then closes the store.

import { chmodSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { createAdaptorServer } from '@hono/node-server';
import type { ControlPlaneConfig } from './config/index.js';
import { parseListen } from './config/index.js';
import { ControlPlaneError } from './errors.js';
import { FleetService, agentMqttUrl, createFleetBus, type FleetBus } from './fleet/index.js';
import { createApp, createMetrics } from './http/index.js';
import { IngestServer } from './ingest/index.js';
import type { Logger } from './log.js';
import { SqliteMessageStore, type MessageStore } from './store/index.js';
import { loadServerTls, plaintextListeners } from './tls.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export class ControlPlane {
  private constructor(
    readonly store: MessageStore,
    readonly ingest: IngestServer,
    private readonly http: Server,
    readonly fleetBus: FleetBus,
    readonly fleet: FleetService,
    private readonly config: ControlPlaneConfig,
    private readonly log: Logger,
  ) {}

  static async start(config: ControlPlaneConfig, deps: { log: Logger; version: string }): Promise<ControlPlane> {
    const log = deps.log;
    // Before anything opens: a bad certificate stops the start with the file and the reason.
    const tls = config.tls && loadServerTls(config.tls);
    const store = await SqliteMessageStore.open({ dataDir: config.data_dir });
    let ingest: IngestServer | undefined;
    // The embedded broker serves the same certificate unless mqtt.tls names its own.
    const mqtt = config.mqtt.url === undefined && config.mqtt.tls === undefined && config.tls ? { ...config.mqtt, tls: config.tls } : config.mqtt;
    const fleetBus = createFleetBus(mqtt, { store, log });
    let fleet: FleetService | undefined;
    try {
      await ensureAdminToken(store, config.data_dir, log);
      // Listening before HTTP, so the first enrollment answer already names a live broker.
      // The fleet service starts the bus with its handlers and republishes every agent's policy.
      fleet = new FleetService(store, fleetBus, log);
      await fleet.start();
      const grpcCredentials = tls ? ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : undefined;
      ingest = new IngestServer({ listen: config.grpc.listen, ...(grpcCredentials ? { credentials: grpcCredentials } : {}) }, { store, log });
      await ingest.start();
      const ingestRef = ingest;
      const fleetRef = fleet;
      const metrics = createMetrics({
        processMetrics: true,
        ingestCounters: () => ingestRef.counters,
        fleetBusCounters: () => fleetBus.counters(),
        fleetGauges: () => fleetRef.gauges(),
        ...(tls ? { tlsCertExpiry: Math.floor(tls.validToMs / 1000) } : {}),
      });
      const fleetBusPort = {
        agentMqttUrl: (hostname: string) => agentMqttUrl(fleetBus, mqtt, hostname),
        forgetAgent: (id: string) => fleetBus.forgetAgent(id),
        agentEnrolled: async (id: string) => fleetBus.agentEnrolled?.(id),
        health: () => fleetBus.health?.() ?? { state: 'connected', message: '' },
      };
      const app = createApp({ store, log, ingest, fleetBus: fleetBusPort, fleet }, { version: deps.version, metrics });
      const http = (
        tls ? createAdaptorServer({ fetch: app.fetch, createServer: createHttpsServer, serverOptions: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' } }) : createAdaptorServer({ fetch: app.fetch })
      ) as Server;
      const listen = parseListen(config.http.listen)!;
      await new Promise<void>((resolve, reject) => {
        http.once('error', (err) => reject(new ControlPlaneError('listen_failed', `HTTP cannot listen on ${config.http.listen}: ${err.message}`, { cause: err })));
        http.listen(listen.port, listen.host, () => resolve());
      });
      const httpAddr = http.address() as AddressInfo;
      const grpcAddr = ingest.address()!;
      const mqttAddr = fleetBus.address?.();
      log.info(
        {
          http: { host: httpAddr.address, port: httpAddr.port },
          grpc: { host: grpcAddr.host, port: grpcAddr.port },
          mqtt: mqttAddr ? { host: mqttAddr.host, port: mqttAddr.port, tls: mqtt.tls !== undefined } : { url: fleetBus.agentUrl },
          tls: tls ? { subject_alt_name: tls.subjectAltName, valid_to: tls.validTo } : false,
          data_dir: config.data_dir,
          version: deps.version,
        },
        'control plane started',
      );
      const plaintext = plaintextListeners(config);
      if (plaintext.length > 0) {
        log.warn(
          { listeners: plaintext },
          'serving without TLS on a non-loopback address: agents on other machines only connect over TLS; set tls.cert_file and tls.key_file (ferry-control-plane make-certs makes a private CA for trials) or put a TLS-terminating proxy in front',
        );
      }
      return new ControlPlane(store, ingest, http, fleetBus, fleet, config, log);
    } catch (err) {
      await ingest?.stop(Date.now() + 1000).catch(() => {});
      await fleet?.stop().catch(() => {});
      await fleetBus.close().catch(() => {});
      await store.close().catch(() => {});
      throw err;
    }
  }

  async stop(): Promise<void> {
    const deadline = Date.now() + this.config.shutdown_timeout_secs * 1000;
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    const force = setTimeout(() => this.http.closeAllConnections(), Math.max(0, deadline - Date.now()));
    await Promise.all([httpClosed, this.ingest.stop(deadline)]);
    clearTimeout(force);
    await this.fleet.stop(); // writes the statuses still pending before the store closes
    await this.fleetBus.close();
    await this.store.close();
    this.log.info('control plane stopped');
  }
}

/** On the first start (no API token yet) makes an admin token and writes it owner-only to DATA_DIR/admin-token; logs the path, never the token. */
async function ensureAdminToken(store: MessageStore, dataDir: string, log: Logger): Promise<void> {
  if ((await store.countApiTokens()) > 0) return;
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  const issued = await store.createApiToken({ name: 'initial-admin', role: 'admin' });
  writeFileSync(path, `${issued.token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600); // a file left over from elsewhere keeps its mode otherwise
  await store.audit({ actor: 'system', action: 'api_token.created', target: `api_token:${issued.id}`, details: { role: 'admin', file: path } });
  log.info({ path, token_id: issued.id }, `first start: an admin API token was written to ${path} (mode 0600); use it as "Authorization: Bearer <token>"`);
}
