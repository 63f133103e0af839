// The gRPC server for ferry.v1.Ingest. Lifecycle like every Ferry component: built from
// (config, deps), start(), address(), stop(deadline), health().

import { Server, ServerCredentials, status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { AgentFrame__Output, ControlFrame } from '../../proto/index.js';
import { DEFAULT_INGEST_LIMITS, MAX_GRPC_MESSAGE_BYTES, loadIngestPackage } from '../../proto/index.js';
import { ControlPlaneError } from '../errors.js';
import type { Logger } from '../log.js';
import type { MessageStore } from '../store/index.js';
import { IngestSession, type IngestLimits, type SessionCounters } from './session.js';

export interface IngestServerConfig {
  /** `host:port`; `[::]:50051` for IPv6; port 0 picks a free port (see address()). */
  readonly listen: string;
  readonly limits?: Partial<IngestLimits>;
  /** How often the server pings an idle connection, and how long it waits for the answer. */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Default: plaintext (loopback, tests). TLS credentials come with the serve command. */
  readonly credentials?: ServerCredentials;
}

export interface IngestServerDeps {
  readonly store: MessageStore;
  readonly log: Logger;
}

export interface ComponentHealth {
  readonly state: 'stopped' | 'starting' | 'running' | 'stopping' | 'failed';
  readonly message: string;
  readonly since: string;
}

export interface IngestCounters extends SessionCounters {
  streamsOpen: number;
  streamsTotal: number;
}

export const DEFAULT_KEEPALIVE_TIME_MS = 30_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;

export class IngestServer {
  readonly limits: IngestLimits;
  readonly counters: IngestCounters = { streamsOpen: 0, streamsTotal: 0, batches: 0, messagesStored: 0, duplicates: 0, bytesStored: 0 };
  private server: Server | undefined;
  private port: number | undefined;
  private readonly sessions = new Set<IngestSession>();
  private readonly byAgent = new Map<string, IngestSession>();
  private draining = false;
  private healthValue: ComponentHealth = { state: 'stopped', message: 'not started', since: new Date().toISOString() };
  private readonly log: Logger;

  constructor(
    readonly config: IngestServerConfig,
    private readonly deps: IngestServerDeps,
  ) {
    this.limits = { ...DEFAULT_INGEST_LIMITS, ...config.limits };
    this.log = deps.log.child({ component: 'ingest', id: 'grpc' });
  }

  health(): ComponentHealth {
    return this.healthValue;
  }

  /** The bound address (port 0 in config becomes the real port here). */
  address(): { host: string; port: number } | undefined {
    if (this.port === undefined) return undefined;
    return { host: hostOf(this.config.listen), port: this.port };
  }

  /** Agents with an authenticated stream open now (Hello accepted), with the buffer they deliver from. */
  connectedAgents(): ReadonlyMap<string, { readonly bufferId: string }> {
    const out = new Map<string, { bufferId: string }>();
    for (const [agentId, s] of this.byAgent) if (!s.isClosed && s.bufferId !== undefined) out.set(agentId, { bufferId: s.bufferId });
    return out;
  }

  /** Ends the agent's open stream, if any, with UNAUTHENTICATED: used when its credentials are revoked. */
  disconnect(agentId: string, reason: string): boolean {
    const session = this.byAgent.get(agentId);
    if (!session || session.isClosed) return false;
    session.drain(status.UNAUTHENTICATED, reason);
    return true;
  }

  async start(): Promise<void> {
    this.setHealth('starting', `binding ${this.config.listen}`);
    const server = new Server({
      'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
      // The server pings every connection that has been quiet this long and drops it when the
      // ping goes unanswered, so a half-open agent connection does not hold a session forever.
      // grpc-js servers enforce no minimum ping interval: agents may send keepalive pings as often
      // as they need (the uplink pings to detect a dead path from its side).
      'grpc.keepalive_time_ms': this.config.keepaliveTimeMs ?? DEFAULT_KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': this.config.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
      'grpc.keepalive_permit_without_calls': 1,
    });
    const pkg = loadIngestPackage();
    server.addService(pkg.ferry.v1.Ingest.service, {
      Stream: (call: ServerDuplexStream<AgentFrame__Output, ControlFrame>) => this.accept(call),
    });
    try {
      this.port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(this.config.listen, this.config.credentials ?? ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
      );
    } catch (err) {
      this.setHealth('failed', `cannot listen on ${this.config.listen}: ${(err as Error).message}`);
      server.forceShutdown();
      throw new ControlPlaneError('listen_failed', `gRPC ingest cannot listen on ${this.config.listen}: ${(err as Error).message}`, { cause: err });
    }
    this.server = server;
    this.draining = false;
    const addr = this.address();
    this.setHealth('running', `listening on ${addr?.host}:${addr?.port}`);
    this.log.info({ listen: addr, limits: this.limits, tls: this.config.credentials !== undefined }, 'gRPC ingest listening');
  }

  /**
   * Stops taking streams; each open stream finishes the batch it is committing (and sends its Ack),
   * then ends with UNAVAILABLE so its agent reconnects later. Whatever is still open at the deadline
   * (ms since the epoch) is cut; a commit in flight still completes, only its Ack is lost, and the
   * agent's resend is idempotent.
   */
  async stop(deadlineMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.setHealth('stopping', 'draining streams');
    this.draining = true;
    for (const s of this.sessions) s.drain(status.UNAVAILABLE, 'control plane is shutting down; reconnect later');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ streams: this.sessions.size }, 'gRPC ingest shutdown deadline reached; closing remaining connections');
        server.forceShutdown();
        resolve();
      }, Math.max(0, deadlineMs - Date.now()));
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.server = undefined;
    this.port = undefined;
    this.sessions.clear();
    this.byAgent.clear();
    this.counters.streamsOpen = 0;
    this.setHealth('stopped', 'stopped');
    this.log.info('gRPC ingest stopped');
  }

  private accept(call: ServerDuplexStream<AgentFrame__Output, ControlFrame>): void {
    if (this.draining) {
      call.emit('error', { code: status.UNAVAILABLE, details: 'control plane is shutting down; reconnect later' });
      return;
    }
    this.counters.streamsTotal++;
    const session = new IngestSession(call, this.deps.store, this.limits, this.log, {
      counters: this.counters,
      onHello: (s) => {
        // One stream per agent: a newer one means the older is stale (often a half-open connection
        // the agent has given up on). The older finishes its current batch, then ends.
        const older = this.byAgent.get(s.agentId!);
        if (older && older !== s && !older.isClosed) older.drain(status.ABORTED, 'superseded by a newer stream from the same agent');
        this.byAgent.set(s.agentId!, s);
      },
      onClose: (s) => {
        this.sessions.delete(s);
        if (s.agentId !== undefined && this.byAgent.get(s.agentId) === s) this.byAgent.delete(s.agentId);
        this.counters.streamsOpen = this.sessions.size;
      },
    });
    if (!session.isClosed) this.sessions.add(session);
    this.counters.streamsOpen = this.sessions.size;
  }

  private setHealth(state: ComponentHealth['state'], message: string): void {
    this.healthValue = { state, message, since: new Date().toISOString() };
  }
}

function hostOf(listen: string): string {
  const i = listen.lastIndexOf(':');
  const host = i < 0 ? listen : listen.slice(0, i);
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
