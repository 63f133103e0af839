// Turns one decoded MLLP frame into buffered messages and the one response the sender is owed.
//
// The acknowledgement policy lives here (DESIGN.md): accept only after the durable commit, reject
// what cannot be taken with the reason in ERR, never answer an ACK, never store part of a frame.

import { createHash } from 'node:crypto';
import type { AppendResult, IncomingMessage } from '../../buffer/index.js';
import {
  ERR_APPLICATION_INTERNAL,
  ERR_REQUIRED_FIELD_MISSING,
  ERR_SEGMENT_SEQUENCE,
  ERR_VALUE_TOO_LONG,
  ackCodeFor,
  buildAck,
  headerMetadata,
  isAcknowledgement,
  isSingleMessage,
  parseHeader,
  splitMessages,
  type AckError,
  type MessageHeader,
  type Outcome,
} from '../../hl7/index.js';
import type { Frame } from './decoder.js';

export interface FrameSink {
  append(messages: readonly IncomingMessage[], options: { dedupeWindowSecs: number }): Promise<AppendResult>;
}

export interface FrameHandlerEvents {
  /** A frame's messages were committed (or recognised as duplicates). */
  accepted(info: { messages: number; bytes: number; duplicates: number; header: MessageHeader | undefined }): void;
  /** A frame was refused; code is the HL7 table 0357 code, reason safe to log. */
  refused(info: { code: number; reason: string; bytes: number; header: MessageHeader | undefined; hashPrefix: string }): void;
  /** The response that went (or did not go) out, for metrics. */
  responded(code: string | null): void;
}

export interface FrameHandlerOptions {
  readonly sourceId: string;
  readonly dedupeWindowSecs: number;
  readonly sink: FrameSink;
  readonly events: FrameHandlerEvents;
  readonly clock?: () => number;
  /** True once the agent is shutting down: new frames are refused with AR. */
  readonly draining?: () => boolean;
}

let ackCounter = 0;
const ackPrefix = `F${process.pid.toString(36)}${Date.now().toString(36)}`;

/** MSH-10 for our own ACKs: unique within this process, short, ASCII. */
function nextAckControlId(): string {
  ackCounter = (ackCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${ackPrefix}${ackCounter.toString(36)}`;
}

export class FrameHandler {
  constructor(private readonly options: FrameHandlerOptions) {}

  /** The response bytes (unframed), or null when the sender gets no response. */
  async handle(frame: Frame): Promise<Buffer | null> {
    if (frame.kind === 'oversize') {
      const parsed = parseHeader(frame.head);
      return this.refuse(frame.head, frame.size, parsed.header, 'rejected', {
        code: ERR_VALUE_TOO_LONG,
        text: `message of ${frame.size} bytes exceeds max_message_bytes`,
      });
    }
    const payload = frame.payload;
    const bodies = this.messagesOf(payload);
    if (!Array.isArray(bodies)) return this.refuse(payload, payload.length, undefined, 'rejected', bodies);

    const now = (this.options.clock ?? Date.now)();
    const messages: IncomingMessage[] = [];
    let responder: MessageHeader | undefined;
    for (const body of bodies) {
      const parsed = parseHeader(body);
      if (!parsed.ok) {
        const outcome: Outcome = parsed.header ? 'error' : 'rejected';
        // The response is for the frame: address it to the frame's first message when that one is fine.
        const addressee = responder ?? parsed.header;
        return this.refuse(payload, payload.length, addressee, outcome, { code: parsed.problem.code, text: parsed.problem.reason, ...(parsed.problem.location ? { location: parsed.problem.location } : {}) });
      }
      const h = parsed.header;
      if (!responder && !isAcknowledgement(h)) responder = h;
      messages.push({
        sourceId: this.options.sourceId,
        payload: body,
        receivedAt: now,
        meta: headerMetadata(h),
      });
    }
    // All ACKs: stored and logged, never answered. Otherwise the first non-ACK message is answered.
    const header = responder ?? parseHeaderOrUndefined(bodies[0]!);

    if (this.options.draining?.()) {
      return this.refuse(payload, payload.length, header, 'rejected', { code: ERR_APPLICATION_INTERNAL, text: 'agent is shutting down; resend later' });
    }
    let result: AppendResult;
    try {
      result = await this.options.sink.append(messages, { dedupeWindowSecs: this.options.dedupeWindowSecs });
    } catch {
      return this.refuse(payload, payload.length, header, 'rejected', { code: ERR_APPLICATION_INTERNAL, text: 'message could not be stored; resend later' });
    }
    if (result.status === 'full') {
      return this.refuse(payload, payload.length, header, 'rejected', { code: ERR_APPLICATION_INTERNAL, text: 'agent buffer is full; resend later' });
    }
    if (result.status === 'closed') {
      return this.refuse(payload, payload.length, header, 'rejected', { code: ERR_APPLICATION_INTERNAL, text: 'agent is shutting down; resend later' });
    }
    let duplicates = 0;
    for (const o of result.outcomes) if (o.status === 'duplicate') duplicates++;
    this.options.events.accepted({ messages: messages.length, bytes: payload.length, duplicates, header });
    return this.respond(header, 'accepted');
  }

  /** The message bodies of a frame, or why it holds none that can be taken. */
  private messagesOf(payload: Buffer): Buffer[] | AckError {
    if (isSingleMessage(payload)) return [payload];
    const split = splitMessages(payload);
    if (split.messages.length === 0) {
      return { code: ERR_REQUIRED_FIELD_MISSING, text: 'no MSH segment in frame', location: { segment: 'MSH' } };
    }
    if (split.strayOffset !== undefined) {
      return { code: ERR_SEGMENT_SEQUENCE, text: `segment outside any message at byte ${split.strayOffset}`, location: { segment: 'MSH' } };
    }
    return split.messages.map((s) => payload.subarray(s.start, s.end));
  }

  private refuse(bytes: Buffer, size: number, header: MessageHeader | undefined, outcome: Outcome, error: AckError): Buffer | null {
    this.options.events.refused({ code: error.code, reason: error.text, bytes: size, header, hashPrefix: hashPrefix(bytes) });
    return this.respond(header, outcome, error);
  }

  private respond(header: MessageHeader | undefined, outcome: Outcome, error?: AckError): Buffer | null {
    const code = ackCodeFor(header, outcome);
    this.options.events.responded(code);
    if (code === null) return null;
    return buildAck(header, { code, ackControlId: nextAckControlId(), ...(error ? { error } : {}) });
  }
}

function parseHeaderOrUndefined(body: Buffer): MessageHeader | undefined {
  return parseHeader(body).header;
}

/** First 12 hex digits of the sha256: identifies bytes in logs without revealing them. */
export function hashPrefix(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 12);
}
