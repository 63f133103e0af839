// One stream to the control plane: Hello → Welcome, then Batches read from the buffer in seq order
// with up to max_in_flight_batches awaiting their Ack, one Ack per Batch, in order. A session ends
// once (the server's status, a protocol breach, a missing Ack, or stop) and reports how; the
// Uplink decides what comes next. Rows are never deleted here: the Uplink does that on each Ack.

import { Metadata, status, type ClientDuplexStream } from '@grpc/grpc-js';
import {
  AGENT_ID_METADATA_KEY,
  AGENT_SECRET_METADATA_KEY,
  DEFAULT_INGEST_LIMITS,
  type AgentFrame,
  type ControlFrame__Output,
  type Envelope,
  type IngestClient,
  type Welcome__Output,
} from '../../proto/index.js';
import type { MessageBuffer, StoredMessage } from '../buffer/index.js';
import type { Logger } from '../log.js';

/** Longest a partial batch waits to fill while another batch is in flight (see linger). */
const BATCH_LINGER_MS = 20;

/** What the uplink needs from the buffer. */
export type UplinkBuffer = Pick<MessageBuffer, 'bufferId' | 'readOldest' | 'deleteThrough' | 'stats'>;

export interface SessionEnd {
  /** grpc status code when the server (or the transport) ended the stream; undefined for local ends. */
  readonly code: status | undefined;
  readonly kind: 'status' | 'ack_timeout' | 'protocol' | 'local' | 'stopped';
  readonly details: string;
  readonly welcomed: boolean;
}

export interface SessionDeps {
  readonly client: IngestClient;
  readonly agentId: string;
  readonly secret: string;
  readonly agentVersion: string;
  readonly buffer: UplinkBuffer;
  readonly ackTimeoutMs: number;
  readonly log: Logger;
  /** Resolves when the buffer may hold rows it did not hold when `commits` was `seenCommits`, or on abort. */
  readonly waitForData: (seenCommits: number, signal: AbortSignal) => Promise<void>;
  readonly onWelcome: (welcome: Welcome__Output) => void;
  readonly onBatchSent: (messages: number, bytes: number) => void;
  readonly onAck: (committedSeq: number, messages: number) => void;
}

interface InFlight {
  readonly lastSeq: number;
  readonly messages: number;
}

type Call = ClientDuplexStream<AgentFrame, ControlFrame__Output>;

export class UplinkSession {
  readonly done: Promise<SessionEnd>;
  private resolveDone!: (end: SessionEnd) => void;
  private call: Call | undefined;
  private ended = false;
  private welcomed = false;
  private stopping = false;
  private cursor = 0;
  private limits: { maxBatchMessages: number; maxBatchBytes: number; maxInFlightBatches: number } = { ...DEFAULT_INGEST_LIMITS };
  private readonly inFlight: InFlight[] = [];
  private ackTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private wakeWindow: (() => void) | undefined;

  constructor(private readonly deps: SessionDeps) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get inFlightBatches(): number {
    return this.inFlight.length;
  }

  /** Opens the stream and sends Hello; the Welcome must come within the ack timeout. */
  open(): void {
    const md = new Metadata();
    md.set(AGENT_ID_METADATA_KEY, this.deps.agentId);
    md.set(AGENT_SECRET_METADATA_KEY, this.deps.secret);
    const call = this.deps.client.Stream(md);
    this.call = call;
    call.on('data', (frame: ControlFrame__Output) => this.onFrame(frame));
    call.on('error', () => {}); // the 'status' event carries the same outcome
    call.on('status', (s: { code: status; details: string }) => this.end({ code: s.code, kind: 'status', details: s.details || status[s.code] || 'stream ended' }));
    this.armTimer(`no Welcome within ${this.deps.ackTimeoutMs} ms of Hello`);
    call.write({ hello: { agentId: this.deps.agentId, bufferId: this.deps.buffer.bufferId, agentVersion: this.deps.agentVersion } });
  }

  /**
   * Graceful end: send nothing more, give the batches in flight until the deadline (ms since the
   * epoch) to be acknowledged, then cancel the stream.
   */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.wakeWindow?.();
    if (!this.ended && this.welcomed && this.inFlight.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.done,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, deadlineMs - Date.now()));
          const check = (): void => {
            if (this.inFlight.length === 0 || this.ended) resolve();
            else this.afterAck = check;
          };
          check();
        }),
      ]);
      clearTimeout(timer);
    }
    this.cancel('stopped', 'the agent is stopping');
    await this.done;
  }

  private afterAck: (() => void) | undefined;

  /** Ends the stream from this side. */
  cancel(kind: SessionEnd['kind'], details: string): void {
    if (this.ended) return;
    this.end({ code: undefined, kind, details });
    this.call?.cancel();
  }

  private end(e: Omit<SessionEnd, 'welcomed'>): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.ackTimer);
    this.abort.abort();
    this.wakeWindow?.();
    this.afterAck?.();
    this.resolveDone({ ...e, welcomed: this.welcomed });
  }

  private onFrame(frame: ControlFrame__Output): void {
    if (this.ended) return;
    if (frame.frame === 'welcome' && frame.welcome && !this.welcomed) return this.onWelcome(frame.welcome);
    if (frame.frame === 'ack' && frame.ack && this.welcomed) return this.onAck(frame.ack.committedSeq);
    this.cancel('protocol', `unexpected ${frame.frame ?? 'empty'} frame from the control plane`);
  }

  private onWelcome(w: Welcome__Output): void {
    this.welcomed = true;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.limits = {
      maxBatchMessages: w.maxBatchMessages > 0 ? w.maxBatchMessages : DEFAULT_INGEST_LIMITS.maxBatchMessages,
      maxBatchBytes: w.maxBatchBytes > 0 ? w.maxBatchBytes : DEFAULT_INGEST_LIMITS.maxBatchBytes,
      maxInFlightBatches: Math.max(1, w.maxInFlightBatches),
    };
    // Resume strictly after what the control plane holds: nothing it has is ever sent again.
    this.cursor = w.committedSeq;
    this.deps.onWelcome(w);
    this.pump().catch((err: unknown) => this.cancel('local', `reading the buffer failed: ${(err as Error).message}`));
  }

  private onAck(committedSeq: number): void {
    const batch = this.inFlight.shift();
    if (!batch) return this.cancel('protocol', 'Ack received with no batch in flight');
    if (committedSeq < batch.lastSeq) return this.cancel('protocol', `Ack for seq ${committedSeq} does not cover its batch (through seq ${batch.lastSeq})`);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.inFlight.length > 0) this.armTimer(`no Ack within ${this.deps.ackTimeoutMs} ms with ${this.inFlight.length} batch(es) in flight`);
    this.deps.onAck(committedSeq, batch.messages);
    this.wakeWindow?.();
    this.afterAck?.();
  }

  private armTimer(why: string): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(() => this.cancel('ack_timeout', `${why}; the connection is presumed dead`), this.deps.ackTimeoutMs);
  }

  /**
   * While a batch is already in flight, give a partial batch up to BATCH_LINGER_MS to fill: every
   * batch costs a commit at the control plane and a delete here, so under load a few full batches
   * beat hundreds of small ones. With nothing in flight a batch goes at once: no added latency
   * when traffic is light.
   */
  private async linger(): Promise<void> {
    if (this.inFlight.length === 0) return;
    const deadline = Date.now() + BATCH_LINGER_MS;
    while (!this.ended && !this.stopping && Date.now() < deadline && this.deps.buffer.stats().lastSeq - this.cursor < this.limits.maxBatchMessages) {
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  private async pump(): Promise<void> {
    const { buffer } = this.deps;
    while (!this.ended && !this.stopping) {
      if (this.inFlight.length >= this.limits.maxInFlightBatches) {
        await new Promise<void>((resolve) => (this.wakeWindow = resolve));
        this.wakeWindow = undefined;
        continue;
      }
      await this.linger();
      if (this.ended || this.stopping) return;
      const seenCommits = buffer.stats().commits;
      const rows = await buffer.readOldest(this.cursor, this.limits.maxBatchMessages, this.limits.maxBatchBytes);
      if (this.ended || this.stopping) return;
      const batch = takeWithin(rows, this.limits.maxBatchBytes);
      if (batch.length === 0) {
        await this.deps.waitForData(seenCommits, this.abort.signal);
        continue;
      }
      let bytes = 0;
      for (const m of batch) bytes += m.payload.length;
      const lastSeq = batch[batch.length - 1]!.seq;
      this.cursor = lastSeq;
      this.inFlight.push({ lastSeq, messages: batch.length });
      if (this.inFlight.length === 1) this.armTimer(`no Ack within ${this.deps.ackTimeoutMs} ms of sending a batch`);
      const flowing = this.call!.write({ batch: { envelopes: batch.map(toEnvelope) } });
      this.deps.onBatchSent(batch.length, bytes);
      if (!flowing) await this.drained();
    }
  }

  /** Waits until grpc-js has taken the last write off its buffer (or the session ended). */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.call?.off('drain', done);
        this.abort.signal.removeEventListener('abort', done);
        resolve();
      };
      this.call!.once('drain', done);
      this.abort.signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Rows in order while their payloads fit in maxBytes; always at least one (a single large message goes alone). */
export function takeWithin(rows: readonly StoredMessage[], maxBytes: number): StoredMessage[] {
  const out: StoredMessage[] = [];
  let total = 0;
  for (const row of rows) {
    if (out.length > 0 && total + row.payload.length > maxBytes) break;
    out.push(row);
    total += row.payload.length;
  }
  return out;
}

function toEnvelope(m: StoredMessage): Envelope {
  return {
    seq: m.seq,
    sourceId: m.sourceId,
    receivedAtMs: m.receivedAt,
    payload: m.payload,
    sha256: m.sha256,
    metadata: { ...m.meta, size: m.payload.length },
  };
}
