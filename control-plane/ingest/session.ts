// One agent's ingest stream: authenticate, Hello → Welcome, then each Batch → commit → Ack.
//
// Frames are handled strictly one after another: a batch is committed (durably) before its Ack is
// written and before the next batch is looked at, so Acks go out in order, one per batch. The agent
// may have several batches in flight; they wait here, and reading pauses when too many are queued.

import { status, type Metadata, type ServerDuplexStream, type StatusObject } from '@grpc/grpc-js';
import type { AgentFrame__Output, ControlFrame, Envelope__Output } from '../../proto/index.js';
import { AGENT_ID_METADATA_KEY, AGENT_SECRET_METADATA_KEY } from '../../proto/index.js';
import { ControlPlaneError } from '../errors.js';
import type { Logger } from '../log.js';
import type { IncomingEnvelope, MessageStore } from '../store/index.js';

export interface IngestLimits {
  readonly maxBatchMessages: number;
  readonly maxBatchBytes: number;
  readonly maxInFlightBatches: number;
}

export interface SessionCounters {
  batches: number;
  messagesStored: number;
  duplicates: number;
  bytesStored: number;
}

export interface SessionHooks {
  /** Called once Hello has been accepted; the server uses it to supersede an older stream of the same agent. */
  readonly onHello: (session: IngestSession) => void;
  readonly onClose: (session: IngestSession) => void;
  readonly counters: SessionCounters;
}

type Call = ServerDuplexStream<AgentFrame__Output, ControlFrame>;

export class IngestSession {
  agentId: string | undefined;
  bufferId: string | undefined;
  private readonly queue: AgentFrame__Output[] = [];
  private pumping = false;
  private ended = false;
  private closed = false;
  private paused = false;
  private helloDone = false;
  private stopWith: Partial<StatusObject> | undefined;
  private readonly auth: Promise<string | undefined>;
  private log: Logger;

  constructor(
    private readonly call: Call,
    private readonly store: MessageStore,
    private readonly limits: IngestLimits,
    log: Logger,
    private readonly hooks: SessionHooks,
  ) {
    this.log = log.child({ peer: call.getPeer() });
    this.auth = this.authenticate(call.metadata);
    call.on('data', (frame: AgentFrame__Output) => {
      if (this.closed) return;
      this.queue.push(frame);
      if (this.queue.length > limits.maxInFlightBatches + 1 && !this.paused) {
        this.paused = true;
        call.pause();
      }
      this.kick();
    });
    call.on('end', () => {
      this.ended = true;
      this.kick();
    });
    call.on('cancelled', () => this.finish('cancelled by the agent or the connection dropped'));
    this.kick();
  }

  /**
   * Ends the stream after the batch being committed (if any) has been acknowledged. Queued frames
   * are dropped: the agent resends them, and ingest is idempotent. Used for shutdown (UNAVAILABLE)
   * and when a newer stream of the same agent arrives (ABORTED).
   */
  drain(code: status, details: string): void {
    this.stopWith ??= { code, details };
    this.kick();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private kick(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    void this.pump()
      .catch((err: unknown) => this.fail(status.INTERNAL, 'internal error while handling the stream', err))
      .finally(() => {
        this.pumping = false;
        if (!this.closed && (this.queue.length > 0 || this.ended || this.stopWith)) this.kick();
      });
  }

  private async pump(): Promise<void> {
    const agentId = await this.auth;
    if (agentId === undefined || this.closed) return;
    for (;;) {
      if (this.closed) return;
      if (this.stopWith) {
        this.fail(this.stopWith.code ?? status.UNAVAILABLE, this.stopWith.details ?? 'stream stopped');
        return;
      }
      const frame = this.queue.shift();
      if (!frame) break;
      if (this.paused && this.queue.length <= this.limits.maxInFlightBatches) {
        this.paused = false;
        this.call.resume();
      }
      if (!this.helloDone) {
        if (frame.frame !== 'hello' || !frame.hello) return this.fail(status.INVALID_ARGUMENT, 'the first frame of a stream must be Hello');
        await this.onHello(agentId, frame.hello.agentId, frame.hello.bufferId, frame.hello.agentVersion);
      } else if (frame.frame === 'batch' && frame.batch) {
        await this.onBatch(agentId, this.bufferId!, frame.batch.envelopes);
      } else {
        return this.fail(status.INVALID_ARGUMENT, frame.frame === 'hello' ? 'Hello was already received on this stream' : 'frame carries neither Hello nor Batch');
      }
    }
    if (this.ended && this.queue.length === 0) {
      // The agent half-closed and everything it sent is acknowledged: end with OK.
      this.closed = true;
      this.call.end();
      this.hooks.onClose(this);
      this.log.info('ingest stream ended by the agent');
    }
  }

  private async authenticate(metadata: Metadata): Promise<string | undefined> {
    const id = single(metadata, AGENT_ID_METADATA_KEY);
    const secret = single(metadata, AGENT_SECRET_METADATA_KEY);
    if (!id || !secret) {
      this.fail(status.UNAUTHENTICATED, `agent credentials missing: send ${AGENT_ID_METADATA_KEY} and ${AGENT_SECRET_METADATA_KEY} metadata`);
      return undefined;
    }
    try {
      const result = await this.store.verifyAgentSecret(id, secret);
      if (result.status !== 'ok') {
        // The peer only learns that the credentials were refused; the log says why (never the secret).
        this.log.warn({ agent_id: id.slice(0, 64), reason: result.status }, 'ingest stream refused: agent credentials not accepted');
        this.fail(status.UNAUTHENTICATED, 'agent credentials refused (unknown agent, wrong secret, or revoked)', undefined, false);
        return undefined;
      }
    } catch (err) {
      this.fail(status.UNAVAILABLE, 'credential check failed; retry later', err);
      return undefined;
    }
    this.agentId = id;
    this.log = this.log.child({ agent_id: id });
    return id;
  }

  private async onHello(agentId: string, helloAgentId: string, bufferId: string, agentVersion: string): Promise<void> {
    if (helloAgentId !== agentId) return this.fail(status.PERMISSION_DENIED, 'Hello names an agent other than the one the stream authenticated as');
    if (!bufferId || bufferId.length > 256) return this.fail(status.INVALID_ARGUMENT, 'Hello must carry a buffer id (1-256 characters)');
    const committedSeq = await this.store.committedSeq(agentId, bufferId);
    if (this.closed) return;
    this.helloDone = true;
    this.bufferId = bufferId;
    this.log = this.log.child({ buffer_id: bufferId });
    this.hooks.onHello(this);
    this.call.write({
      welcome: {
        committedSeq,
        maxBatchMessages: this.limits.maxBatchMessages,
        maxBatchBytes: this.limits.maxBatchBytes,
        maxInFlightBatches: this.limits.maxInFlightBatches,
      },
    });
    this.log.info({ committed_seq: committedSeq, agent_version: agentVersion.slice(0, 64) }, 'ingest stream open; Welcome sent');
  }

  private async onBatch(agentId: string, bufferId: string, wire: readonly Envelope__Output[]): Promise<void> {
    if (wire.length > this.limits.maxBatchMessages) {
      return this.fail(status.INVALID_ARGUMENT, `batch of ${wire.length} messages exceeds max_batch_messages ${this.limits.maxBatchMessages}`);
    }
    let bytes = 0;
    for (const e of wire) bytes += e.payload.length;
    if (wire.length > 1 && bytes > this.limits.maxBatchBytes) {
      return this.fail(status.INVALID_ARGUMENT, `batch of ${bytes} payload bytes exceeds max_batch_bytes ${this.limits.maxBatchBytes} (only a single-message batch may)`);
    }
    const started = performance.now();
    let result;
    try {
      result = await this.store.ingestBatch(agentId, bufferId, wire.map(toIncoming));
    } catch (err) {
      if (err instanceof ControlPlaneError && err.code === 'payload_hash_mismatch') {
        this.log.error({ err: { code: err.code, message: err.message }, messages: wire.length }, 'batch rejected: a payload does not match its sha256; nothing of it was stored');
        return this.fail(status.DATA_LOSS, err.message, undefined, false);
      }
      if (err instanceof ControlPlaneError && err.code === 'batch_invalid') {
        this.log.warn({ err: { code: err.code, message: err.message }, messages: wire.length }, 'batch rejected as invalid; nothing of it was stored');
        return this.fail(status.INVALID_ARGUMENT, err.message, undefined, false);
      }
      return this.fail(status.UNAVAILABLE, 'the store could not commit the batch; reconnect and resend', err);
    }
    const c = this.hooks.counters;
    c.batches++;
    c.messagesStored += result.stored;
    c.duplicates += result.duplicates;
    if (result.stored > 0) c.bytesStored += bytes;
    if (this.closed) return;
    this.call.write({ ack: { committedSeq: result.committedSeq } });
    this.log.debug(
      { messages: wire.length, stored: result.stored, duplicates: result.duplicates, committed_seq: result.committedSeq, commit_ms: Math.round(performance.now() - started) },
      'batch committed and acknowledged',
    );
  }

  /** Ends the stream with a non-OK status (once). `log` false: the caller has logged already. */
  private fail(code: status, details: string, cause?: unknown, log = true): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    if (log) {
      const err = cause instanceof ControlPlaneError ? { code: cause.code, message: cause.message } : cause instanceof Error ? { message: cause.message } : undefined;
      const fields = { grpc_status: status[code], details, ...(err ? { err } : {}) };
      if (code === status.UNAVAILABLE || code === status.ABORTED || code === status.INTERNAL) this.log.warn(fields, 'ingest stream ended');
      else this.log.warn(fields, 'ingest stream refused');
    }
    this.call.emit('error', { code, details } satisfies Partial<StatusObject>);
    this.hooks.onClose(this);
  }

  /** The stream went away without a status to send (cancelled, connection lost). */
  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.hooks.onClose(this);
    this.log.info({ reason }, 'ingest stream closed; the agent resumes from Welcome when it reconnects');
  }
}

function single(metadata: Metadata, key: string): string | undefined {
  const values = metadata.get(key);
  if (values.length !== 1) return undefined;
  const v = values[0];
  const text = typeof v === 'string' ? v : v?.toString('utf8');
  return text && text.length <= 512 ? text : undefined;
}

function toIncoming(e: Envelope__Output): IncomingEnvelope {
  const m = e.metadata;
  return {
    seq: e.seq,
    sourceId: e.sourceId,
    receivedAtMs: e.receivedAtMs,
    payload: e.payload,
    sha256: e.sha256,
    metadata: {
      messageType: m?.messageType ?? '',
      triggerEvent: m?.triggerEvent ?? '',
      controlId: m?.controlId ?? '',
      sendingApplication: m?.sendingApplication ?? '',
      sendingFacility: m?.sendingFacility ?? '',
      version: m?.version ?? '',
    },
  };
}
