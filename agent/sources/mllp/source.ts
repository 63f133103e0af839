// The mllp source: a TCP (or TLS) listener whose connections each get a decoder, an ordered
// response queue and the limits from config. Lifecycle: start(), stop(deadline), health().

import { readFileSync } from 'node:fs';
import { BlockList, createServer, isIPv4, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { AgentMetrics } from '../../admin/metrics.js';
import { parseListen, type MllpSourceConfig } from '../../config/index.js';
import { FerryError } from '../../errors.js';
import { MllpConnection } from './connection.js';
import { FrameHandler, type FrameSink } from './frame-handler.js';
import type { Source, SourceCounters, SourceHealth } from '../source.js';

export type { SourceHealth } from '../source.js';

export interface MllpSourceDeps {
  readonly sink: FrameSink;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
}

export interface MllpSourceCounters {
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  messagesAcked: number;
  framesRejected: number;
  duplicates: number;
  lastError: string | null;
}

export class MllpSource implements Source {
  private server: Server | undefined;
  private readonly connections = new Set<MllpConnection>();
  private readonly allow: BlockList | undefined;
  private readonly handler: FrameHandler;
  private draining = false;
  private healthValue: SourceHealth = { state: 'stopped', message: 'not started', since: new Date().toISOString() };
  readonly stats: MllpSourceCounters = { connections: 0, connectionsTotal: 0, connectionsRefused: 0, messagesAcked: 0, framesRejected: 0, duplicates: 0, lastError: null };
  private readonly log: Logger;

  constructor(
    readonly config: MllpSourceConfig,
    private readonly deps: MllpSourceDeps,
  ) {
    this.log = deps.log.child({ component: 'source', type: 'mllp', id: config.id });
    this.allow = config.allow_ips ? buildAllowList(config.allow_ips) : undefined;
    const m = deps.metrics;
    const received = m.messagesReceived.labels(config.id);
    const acked = m.messagesAcked.labels(config.id);
    const dup = m.messagesDuplicate.labels(config.id);
    const bytes = m.bytesReceived.labels(config.id);
    const responseCounters = new Map<string, { inc(): void }>();
    this.handler = new FrameHandler({
      sourceId: config.id,
      dedupeWindowSecs: config.dedupe_window_secs,
      sink: deps.sink,
      draining: () => this.draining,
      events: {
        accepted: ({ messages, bytes: n, duplicates, header }) => {
          received.inc(messages);
          acked.inc(messages);
          bytes.inc(n);
          this.stats.messagesAcked += messages;
          if (duplicates > 0) {
            dup.inc(duplicates);
            this.stats.duplicates += duplicates;
            this.log.info({ control_id: header?.controlId, message_type: header?.messageType, duplicates }, 'resent message recognised inside dedupe window; acknowledged again, stored once');
          }
          if (this.log.isLevelEnabled('debug')) this.log.debug({ control_id: header?.controlId, message_type: header?.messageType, size: n, messages }, 'frame committed');
        },
        refused: ({ code, reason, bytes: n, header, hashPrefix }) => {
          m.framesRejected.labels(config.id, String(code)).inc();
          this.stats.framesRejected++;
          this.stats.lastError = reason;
          this.log.warn({ code, reason, size: n, sha256_prefix: hashPrefix, control_id: header?.controlId, message_type: header?.messageType }, 'frame refused');
        },
        responded: (code) => {
          const key = code ?? 'none';
          let c = responseCounters.get(key);
          if (!c) {
            c = m.responses.labels(config.id, key);
            responseCounters.set(key, c);
          }
          c.inc();
        },
      },
    });
  }

  counters(): SourceCounters {
    return { ...this.stats };
  }

  describe(): Readonly<Record<string, unknown>> {
    return { listen: this.address() ?? null };
  }

  health(): SourceHealth {
    return this.healthValue;
  }

  /** The bound address (port 0 in config becomes the real port here). */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  async start(): Promise<void> {
    const listen = parseListen(this.config.listen);
    if (!listen) throw new FerryError('config_invalid', `source ${this.config.id}: bad listen address`);
    this.setHealth('starting', 'binding listener');
    const onSocket = (socket: Socket): void => this.accept(socket);
    const tls = this.config.tls;
    const server = tls
      ? createTlsServer(
          {
            cert: readFileSync(tls.cert_file),
            key: readFileSync(tls.key_file),
            ...(tls.ca_file ? { ca: readFileSync(tls.ca_file) } : {}),
            requestCert: tls.require_client_cert,
            rejectUnauthorized: tls.require_client_cert,
          },
          onSocket,
        )
      : createServer(onSocket);
    server.on('tlsClientError', (err: Error) => {
      this.stats.connectionsRefused++;
      this.deps.metrics.connectionsRefused.labels(this.config.id, 'tls').inc();
      this.log.warn({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'TLS handshake failed; connection refused');
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.setHealth('failed', `cannot listen on ${this.config.listen}: ${err.code ?? err.message}`);
        reject(new FerryError('listen_failed', `source ${this.config.id} cannot listen on ${this.config.listen}: ${err.code ?? err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen({ host: listen.host, port: listen.port, backlog: 511 }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'MLLP listener error'));
    this.server = server;
    const addr = this.address();
    this.setHealth('running', `listening on ${addr?.host}:${addr?.port}`);
    this.log.info({ listen: addr, tls: Boolean(tls) }, 'MLLP listener started');
  }

  /**
   * Stops accepting, answers every frame already read, then closes each connection; whatever is
   * still open at the deadline is closed hard (its commits still finish; only the ACK is lost,
   * which the sender's resend and the dedupe window cover).
   */
  async stop(deadlineMs: number): Promise<void> {
    if (!this.server) return;
    this.setHealth('stopping', 'draining connections');
    this.draining = true;
    const server = this.server;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const drains = Promise.all([...this.connections].map((c) => c.drain()));
    const timer = setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, Math.max(0, deadlineMs - Date.now()));
    await drains;
    clearTimeout(timer);
    await closed;
    this.server = undefined;
    this.setHealth('stopped', 'stopped');
    this.log.info('MLLP listener stopped');
  }

  private accept(socket: Socket): void {
    const remote = normaliseAddress(socket.remoteAddress);
    if (this.allow && (!remote || !this.allow.check(remote, isIPv4(remote) ? 'ipv4' : 'ipv6'))) {
      this.refuse(socket, 'not_allowed', { remote }, 'MLLP connection from an address outside allow_ips refused');
      return;
    }
    if (this.draining) {
      this.refuse(socket, 'shutting_down', { remote }, 'MLLP connection refused during shutdown');
      return;
    }
    if (this.connections.size >= this.config.max_connections) {
      this.refuse(socket, 'max_connections', { remote, max_connections: this.config.max_connections }, 'MLLP connection refused: max_connections reached');
      return;
    }
    const conn = new MllpConnection(
      socket,
      this.handler,
      {
        maxMessageBytes: this.config.max_message_bytes,
        partialFrameTimeoutMs: this.config.partial_frame_timeout_secs * 1000,
        idleTimeoutMs: this.config.idle_timeout_secs * 1000,
        maxPendingFrames: this.config.max_in_flight_per_connection,
        maxPendingBytes: Math.max(this.config.max_message_bytes, 4 * 1024 * 1024),
      },
      this.log.child({ remote }),
    );
    this.connections.add(conn);
    this.stats.connections = this.connections.size;
    this.stats.connectionsTotal++;
    this.deps.metrics.connections.labels(this.config.id).inc();
    void conn.closed.then(() => {
      this.connections.delete(conn);
      this.stats.connections = this.connections.size;
      this.deps.metrics.connections.labels(this.config.id).dec();
    });
  }

  private refuse(socket: Socket, reason: string, fields: object, message: string): void {
    this.stats.connectionsRefused++;
    this.deps.metrics.connectionsRefused.labels(this.config.id, reason).inc();
    this.log.warn(fields, message);
    socket.on('error', () => {});
    socket.destroy();
  }

  private setHealth(state: SourceHealth['state'], message: string): void {
    this.healthValue = { state, message, since: new Date().toISOString() };
  }
}

function buildAllowList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split('/');
    const type = isIPv4(addr!) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(bits), type);
  }
  return list;
}

/** IPv4 clients of a dual-stack listener show up as ::ffff:a.b.c.d. */
function normaliseAddress(address: string | undefined): string | undefined {
  if (address?.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  return address;
}
