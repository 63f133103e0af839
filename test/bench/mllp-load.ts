// The benchmark's load generator: C connections, each keeping W frames in flight (W=1 is a classic
// send-and-wait sender, W>1 a pipelining one). Lean on purpose so it is not the bottleneck: no
// promise per message, responses decoded in place, refills corked into one write per read.
//
// Every response is checked: responses come back in order per connection, so the n-th response must
// be AA with MSA-2 equal to the n-th sent MSH-10. A sample of responses is also read with the agent's
// own readAck (agent/sources/mllp/client.ts) to prove this lean parser reads the same thing.

import { connect, type Socket } from 'node:net';
import { readAck } from '../../agent/sources/mllp/client.js';
import { realisticMessage } from '../helpers/messages.js';

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
const VT_BUF = Buffer.of(VT);
const END_BUF = Buffer.of(FS, CR);

export interface OutboundMessage {
  /** The whole MLLP frame: VT, message, FS CR. */
  readonly framed: Buffer;
  /** Its MSH-10, which the response's MSA-2 must equal. */
  readonly controlId: string;
}

export interface MessageSource {
  readonly kind: string;
  next(): OutboundMessage;
}

/**
 * Realistic 1.5 KB ADT/ORU messages with a unique control id each, made as they are sent. The bytes
 * are exactly realisticMessage(prefix, n) (checked below), but made by patching the counter's digits
 * into a framed template instead of joining strings: every field realisticMessage derives from the
 * control id is a suffix of it (MSH-10, and the MRN/account/order numbers built from its last 8 or 6
 * characters), so writing the counter's last k digits at each such place reproduces the message.
 * About 0.3 µs a message instead of 2.4 µs, so building messages does not limit the generator.
 */
export function realisticSource(prefix: string): MessageSource {
  const templates = [messageTemplate(prefix, 0), messageTemplate(prefix, 1)];
  const digits = Buffer.alloc(10);
  let n = 0;
  const source: MessageSource = {
    kind: 'realistic, built per send',
    next() {
      const i = n++;
      if (i > 9_999_999_999) throw new Error('control id counter overflow');
      let v = i;
      for (let d = 9; d >= 0; d--) {
        digits[d] = 0x30 + (v % 10);
        v = Math.floor(v / 10);
      }
      const t = templates[i % 2]!;
      const framed = Buffer.allocUnsafe(t.bytes.length);
      t.bytes.copy(framed);
      for (const [end, k] of t.digitRuns) digits.copy(framed, end - k, 10 - k, 10);
      return { framed, controlId: prefix + digits.toString('latin1') };
    },
  };
  // Prove the template reproduces realisticMessage byte for byte (both kinds, several counters).
  const probe = realisticSourceCheck(prefix, templates);
  if (probe) throw new Error(`message template does not match realisticMessage: ${probe}`);
  return source;
}

interface MessageTemplate {
  /** Framed message for the sentinel counter. */
  readonly bytes: Buffer;
  /** [end offset, digit count]: where the counter's last digit-count digits are written. */
  readonly digitRuns: [number, number][];
}

/** Sentinel counters (even: ADT, odd: ORU) whose digits do not otherwise occur in the messages. */
const SENTINEL = ['9876543210', '9876543211'] as const;

function messageTemplate(prefix: string, parity: 0 | 1): MessageTemplate {
  const sentinel = SENTINEL[parity];
  const payload = realisticMessage(prefix, Number(sentinel));
  const bytes = Buffer.concat([VT_BUF, payload, END_BUF]);
  const text = bytes.toString('latin1');
  const shortest = sentinel.slice(-6);
  const digitRuns: [number, number][] = [];
  for (let at = text.indexOf(shortest); at !== -1; at = text.indexOf(shortest, at + 1)) {
    const end = at + shortest.length;
    // The longest suffix of the sentinel ending here (10, 8 or 6 digits).
    let k = shortest.length;
    for (const len of [10, 8]) {
      if (end - len >= 0 && text.slice(end - len, end) === sentinel.slice(-len)) {
        k = len;
        break;
      }
    }
    digitRuns.push([end, k]);
  }
  return { bytes, digitRuns };
}

function realisticSourceCheck(prefix: string, templates: MessageTemplate[]): string | undefined {
  for (const i of [0, 1, 2, 3, 7, 10, 123456, 1234567, 9999999998, 9999999999]) {
    const t = templates[i % 2]!;
    const framed = Buffer.from(t.bytes);
    const digits = String(i).padStart(10, '0');
    for (const [end, k] of t.digitRuns) framed.write(digits.slice(10 - k), end - k, 'latin1');
    const expected = Buffer.concat([VT_BUF, realisticMessage(prefix, i), END_BUF]);
    if (!framed.equals(expected)) return `counter ${i}`;
  }
  return undefined;
}

/** The same messages, built before the run and cycled: shows what building messages costs the client. */
export function prebuiltSource(prefix: string, poolSize = 4096): MessageSource {
  const pool: OutboundMessage[] = [];
  for (let i = 0; i < poolSize; i++) {
    const payload = realisticMessage(prefix, i);
    pool.push({ framed: Buffer.concat([VT_BUF, payload, END_BUF]), controlId: `${prefix}${String(i).padStart(10, '0')}` });
  }
  let n = 0;
  return {
    kind: `pre-built pool of ${poolSize}`,
    next() {
      return pool[n++ % poolSize]!;
    },
  };
}

export interface LoadOptions {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  /** Frames in flight per connection. */
  readonly window: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** After the window: how long to wait for outstanding responses before giving up on them. */
  readonly graceMs: number;
  readonly source: MessageSource;
  /** Called when the measured window opens and closes (sample server CPU, metrics, ...). */
  readonly onWindowStart?: () => void;
  readonly onWindowEnd?: () => void;
  /** Every n-th response is also read with readAck and compared (first response of each connection too). */
  readonly crossCheckEvery?: number;
  /**
   * Send exactly this many messages in all, then stop: the measured phase ends when every one is
   * answered (or measureMs passes). Used to load a backlog of a given size.
   */
  readonly maxMessages?: number;
}

export interface LoadResult {
  readonly connections: number;
  readonly window: number;
  readonly sent: number;
  readonly responses: number;
  /** Responses that arrived inside the measured window. */
  readonly windowResponses: number;
  readonly windowSeconds: number;
  readonly msgsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** AA but MSA-2 differed from the MSH-10 sent in that position. */
  readonly mismatched: number;
  /** A code other than AA (AE, AR, ...). */
  readonly notAccepted: number;
  /** Sent, never answered (stalled or closed connection). */
  readonly unanswered: number;
  /** Responses with nothing outstanding on the connection. */
  readonly unexpected: number;
  readonly crossChecked: number;
  readonly crossCheckDisagreements: number;
  readonly socketErrors: string[];
  /** Connections closed by the server before the run ended. */
  readonly closedEarly: number;
  /** CPU seconds the load generator (this process) used in the window. */
  readonly clientCpuSeconds: number;
  readonly firstProblem: string | undefined;
}

/** MSA-1 and MSA-2 of an ACK, read with the ACK's own field separator. */
export function leanReadAck(ack: Buffer): { code: string; controlId: string } {
  const s = ack.toString('latin1');
  const f = s.charAt(3) || '|';
  const token = `MSA${f}`;
  let at = s.indexOf(token);
  while (at > 0 && s.charCodeAt(at - 1) !== CR && s.charCodeAt(at - 1) !== 0x0a) at = s.indexOf(token, at + 1);
  if (at < 0) return { code: '', controlId: '' };
  let end = at;
  while (end < s.length && s.charCodeAt(end) !== CR && s.charCodeAt(end) !== 0x0a) end++;
  const fields = s.slice(at, end).split(f);
  return { code: fields[1] ?? '', controlId: fields[2] ?? '' };
}

/**
 * The fast path of the check, on bytes: true when the ACK's MSA-1 is AA and MSA-2 is exactly
 * `expected`. Anything else is re-read with leanReadAck to say what was wrong.
 */
export function ackIsAaFor(ack: Buffer, expected: string): boolean {
  if (ack.length < 8) return false;
  const f = ack[3]!;
  let at = -1;
  for (let i = ack.indexOf(0x4d /* M */, 1); i !== -1; i = ack.indexOf(0x4d, i + 1)) {
    const before = ack[i - 1];
    if ((before === CR || before === 0x0a) && ack[i + 1] === 0x53 && ack[i + 2] === 0x41 && ack[i + 3] === f) {
      at = i + 4;
      break;
    }
  }
  if (at < 0 || ack[at] !== 0x41 || ack[at + 1] !== 0x41 || ack[at + 2] !== f) return false;
  const id = at + 3;
  for (let j = 0; j < expected.length; j++) if (ack[id + j] !== expected.charCodeAt(j)) return false;
  const next = ack[id + expected.length];
  return next === undefined || next === f || next === CR || next === 0x0a || next === ack[4];
}

interface Shared {
  sending: boolean;
  /** No more than this many sends in all (Infinity: no limit). */
  maxSent: number;
  inWindow: boolean;
  latencies: number[];
  sent: number;
  responses: number;
  windowResponses: number;
  mismatched: number;
  notAccepted: number;
  unexpected: number;
  crossChecked: number;
  crossCheckDisagreements: number;
  firstProblem: string | undefined;
  readonly socketErrors: string[];
  closedEarly: number;
}

class LoadConnection {
  private readonly ids: string[];
  private readonly sentAt: Float64Array;
  private head = 0;
  private count = 0;
  private held: Buffer | null = null;
  private seen = 0;
  private onIdle: (() => void) | undefined;
  closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly window: number,
    private readonly source: MessageSource,
    private readonly shared: Shared,
    private readonly crossCheckEvery: number,
  ) {
    this.ids = new Array<string>(window).fill('');
    this.sentAt = new Float64Array(window);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (shared.socketErrors.length < 5) shared.socketErrors.push(err.code ?? err.message);
    });
    socket.on('close', () => {
      this.closed = true;
      if (shared.sending) shared.closedEarly++;
      this.onIdle?.();
    });
  }

  get outstanding(): number {
    return this.count;
  }

  fill(): void {
    if (this.closed || this.socket.destroyed) return;
    if (this.count >= this.window) return;
    const batch = this.window - this.count > 1;
    if (batch) this.socket.cork();
    const now = performance.now();
    while (this.count < this.window && this.shared.sent < this.shared.maxSent) {
      const m = this.source.next();
      const slot = (this.head + this.count) % this.window;
      this.ids[slot] = m.controlId;
      this.sentAt[slot] = now;
      this.count++;
      this.shared.sent++;
      this.socket.write(m.framed);
    }
    if (batch) this.socket.uncork();
  }

  /** Resolves once nothing is outstanding (or the connection closed). */
  idle(): Promise<void> {
    if (this.count === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.onIdle = resolve;
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const now = performance.now();
    const buf = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = null;
    let pos = 0;
    for (;;) {
      const vt = buf.indexOf(VT, pos);
      if (vt === -1) break;
      let fs = buf.indexOf(FS, vt + 1);
      while (fs !== -1 && fs + 1 < buf.length && buf[fs + 1] !== CR) fs = buf.indexOf(FS, fs + 1);
      if (fs === -1 || fs + 1 >= buf.length) {
        this.held = Buffer.from(buf.subarray(vt));
        break;
      }
      this.onResponse(buf.subarray(vt + 1, fs), now);
      pos = fs + 2;
    }
    if (this.shared.sending) this.fill();
    else if (this.count === 0) this.onIdle?.();
  }

  private onResponse(ack: Buffer, now: number): void {
    const s = this.shared;
    s.responses++;
    if (this.count === 0) {
      s.unexpected++;
      s.firstProblem ??= `response with nothing outstanding: ${JSON.stringify(ack.toString('latin1').slice(0, 120))}`;
      return;
    }
    const expected = this.ids[this.head]!;
    const sentAt = this.sentAt[this.head]!;
    this.head = (this.head + 1) % this.window;
    this.count--;
    if (s.inWindow) {
      s.windowResponses++;
      s.latencies.push(now - sentAt);
    }
    if (!ackIsAaFor(ack, expected)) {
      const got = leanReadAck(ack);
      if (got.code !== 'AA') {
        s.notAccepted++;
        s.firstProblem ??= `expected AA for ${expected}, got ${got.code || '(no MSA)'} for ${got.controlId}`;
      } else {
        s.mismatched++;
        s.firstProblem ??= `expected MSA-2 ${expected}, got ${got.controlId}`;
      }
    }
    if (this.seen++ === 0 || (this.crossCheckEvery > 0 && s.responses % this.crossCheckEvery === 0)) {
      s.crossChecked++;
      // The reference reading (the agent's own readAck) must agree with the fast path's verdict.
      const ref = readAck(ack);
      const got = { code: ref.code === 'AA' && ref.controlId === expected ? 'ok' : 'bad' };
      const fast = ackIsAaFor(ack, expected) ? 'ok' : 'bad';
      if (got.code !== fast) {
        s.crossCheckDisagreements++;
        s.firstProblem ??= `readAck disagrees with the fast check: readAck ${JSON.stringify(ref)} for expected ${expected}, fast check ${fast}`;
      }
    }
  }
}

function connectOne(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Resolves once `count` responses arrived, every connection closed, or `timeoutMs` passed. */
async function untilAnswered(shared: Shared, count: number, timeoutMs: number, conns: LoadConnection[]): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (shared.responses < count && performance.now() < end && conns.some((c) => !c.closed)) await delay(5);
}

/** Runs one load: connect, warm up, measure, stop sending, collect what is still owed, close. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const shared: Shared = {
    sending: false,
    maxSent: options.maxMessages ?? Infinity,
    inWindow: false,
    latencies: [],
    sent: 0,
    responses: 0,
    windowResponses: 0,
    mismatched: 0,
    notAccepted: 0,
    unexpected: 0,
    crossChecked: 0,
    crossCheckDisagreements: 0,
    firstProblem: undefined,
    socketErrors: [],
    closedEarly: 0,
  };
  const attempts = await Promise.allSettled(Array.from({ length: options.connections }, () => connectOne(options.host, options.port)));
  const sockets = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
  const refused = attempts.find((a): a is PromiseRejectedResult => a.status === 'rejected');
  if (refused) {
    for (const s of sockets) s.destroy();
    throw new Error(`could not open ${options.connections} connections to ${options.host}:${options.port}: ${String(refused.reason)}`);
  }
  const conns = sockets.map((s) => new LoadConnection(s, options.window, options.source, shared, options.crossCheckEvery ?? 997));
  let windowStart = 0;
  let windowEnd = 0;
  let cpuStart = process.cpuUsage();
  let cpuInWindow = { user: 0, system: 0 };
  try {
    shared.sending = true;
    for (const c of conns) c.fill();
    await delay(options.warmupMs);
    shared.inWindow = true;
    windowStart = performance.now();
    cpuStart = process.cpuUsage();
    options.onWindowStart?.();
    if (options.maxMessages === undefined) await delay(options.measureMs);
    else await untilAnswered(shared, options.maxMessages, options.measureMs, conns);
    shared.inWindow = false;
    shared.sending = false;
    windowEnd = performance.now();
    cpuInWindow = process.cpuUsage(cpuStart);
    options.onWindowEnd?.();
    const grace = delay(options.graceMs);
    await Promise.race([Promise.all(conns.map((c) => c.idle())), grace]);
  } finally {
    shared.sending = false;
    for (const c of conns) c.destroy();
  }
  const unanswered = conns.reduce((n, c) => n + c.outstanding, 0);
  const sorted = Float64Array.from(shared.latencies).sort();
  const windowSeconds = (windowEnd - windowStart) / 1000;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    connections: options.connections,
    window: options.window,
    sent: shared.sent,
    responses: shared.responses,
    windowResponses: shared.windowResponses,
    windowSeconds,
    msgsPerSec: windowSeconds > 0 ? shared.windowResponses / windowSeconds : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: sorted.length > 0 ? sum / sorted.length : NaN,
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
    mismatched: shared.mismatched,
    notAccepted: shared.notAccepted,
    unanswered,
    unexpected: shared.unexpected,
    crossChecked: shared.crossChecked,
    crossCheckDisagreements: shared.crossCheckDisagreements,
    socketErrors: shared.socketErrors,
    closedEarly: shared.closedEarly,
    clientCpuSeconds: (cpuInWindow.user + cpuInWindow.system) / 1e6,
    firstProblem: shared.firstProblem,
  };
}
