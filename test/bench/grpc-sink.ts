// The drain ceiling: the same ferry.v1.Ingest contract (proto/index.ts's loadIngestPackage, the same
// message size limits) with nothing behind it. Two halves:
//   server  run as its own process (`node dist/test/bench/grpc-sink.js`): authenticates nothing,
//           answers Hello with a Welcome carrying the default limits, and every Batch with an Ack
//           for its last seq at once. Prints {"port": N} on stdout once listening.
//   client  runSinkClient(): one bidirectional stream from the bench process sending `total`
//           envelopes as the agent's uplink does (batches of max_batch_messages / max_batch_bytes
//           from the Welcome, max_in_flight_batches awaiting their Ack, write backpressure honoured),
//           with realistic 1.5 KB payloads, their sha256 and metadata: the same envelope sizes.
// What the agent adds on top of this is its buffer (read, decrypt, delete on Ack) and the control
// plane's commit; this is what grpc-js and protobuf alone cost for the same bytes.

import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, Server, ServerCredentials, credentials, type ClientDuplexStream, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  AGENT_ID_METADATA_KEY,
  AGENT_SECRET_METADATA_KEY,
  DEFAULT_INGEST_LIMITS,
  MAX_GRPC_MESSAGE_BYTES,
  loadIngestPackage,
  type AgentFrame,
  type AgentFrame__Output,
  type ControlFrame,
  type ControlFrame__Output,
  type Envelope,
} from '../../proto/index.js';
import { realisticMessage } from '../helpers/messages.js';

// ---- server ------------------------------------------------------------------------------------

function serveStream(call: ServerDuplexStream<AgentFrame__Output, ControlFrame>): void {
  let hello = false;
  call.on('data', (frame: AgentFrame__Output) => {
    if (!hello) {
      if (frame.frame !== 'hello') {
        call.emit('error', { code: 3, details: 'first frame must be Hello' });
        return;
      }
      hello = true;
      call.write({
        welcome: {
          committedSeq: 0,
          maxBatchMessages: DEFAULT_INGEST_LIMITS.maxBatchMessages,
          maxBatchBytes: DEFAULT_INGEST_LIMITS.maxBatchBytes,
          maxInFlightBatches: DEFAULT_INGEST_LIMITS.maxInFlightBatches,
        },
      });
      return;
    }
    const envelopes = frame.batch?.envelopes ?? [];
    const last = envelopes[envelopes.length - 1];
    call.write({ ack: { committedSeq: last ? last.seq : 0 } });
  });
  call.on('end', () => call.end());
  call.on('error', () => {});
}

async function serverMain(): Promise<void> {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
  });
  server.addService(loadIngestPackage().ferry.v1.Ingest.service, { Stream: serveStream });
  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync(`127.0.0.1:${Number(process.env.PORT ?? 0)}`, ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))),
  );
  process.stdout.write(JSON.stringify({ port }) + '\n');
  const stop = (): void => {
    server.forceShutdown();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---- client ------------------------------------------------------------------------------------

export interface SinkClientResult {
  readonly messages: number;
  readonly batches: number;
  readonly payloadBytes: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  /** CPU seconds of this (the client's) process over the run. */
  readonly clientCpuSeconds: number;
  readonly maxBatchMessages: number;
  readonly maxInFlightBatches: number;
}

interface PoolItem {
  readonly payload: Buffer;
  readonly sha256: Buffer;
  readonly controlId: string;
  readonly type: string;
  readonly trigger: string;
}

/** Sends `total` envelopes to the sink at `port` and resolves when the last one is acknowledged. */
export async function runSinkClient(port: number, total: number, prefix: string, timeoutMs = 120_000): Promise<SinkClientResult> {
  const pool: PoolItem[] = [];
  for (let i = 0; i < 4096; i++) {
    const payload = realisticMessage(prefix, i);
    pool.push({
      payload,
      sha256: createHash('sha256').update(payload).digest(),
      controlId: `${prefix}${String(i).padStart(10, '0')}`,
      type: i % 2 === 0 ? 'ADT' : 'ORU',
      trigger: i % 2 === 0 ? 'A01' : 'R01',
    });
  }
  const Ingest = loadIngestPackage().ferry.v1.Ingest;
  const client = new Ingest(`127.0.0.1:${port}`, credentials.createInsecure(), {
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
  });
  const md = new Metadata();
  md.set(AGENT_ID_METADATA_KEY, 'bench-sink-client');
  md.set(AGENT_SECRET_METADATA_KEY, 'not-checked');
  const call: ClientDuplexStream<AgentFrame, ControlFrame__Output> = client.Stream(md);
  const receivedAt = Date.now();
  let limits = { ...DEFAULT_INGEST_LIMITS } as { maxBatchMessages: number; maxBatchBytes: number; maxInFlightBatches: number };
  let nextSeq = 1;
  let acked = 0;
  let batches = 0;
  let payloadBytes = 0;
  let inFlight = 0;
  let waitingDrain = false;
  let started = 0;
  let cpu0 = process.cpuUsage();
  const inFlightSizes: number[] = [];

  const makeBatch = (): Envelope[] => {
    const out: Envelope[] = [];
    let bytes = 0;
    while (nextSeq <= total && out.length < limits.maxBatchMessages) {
      const item = pool[(nextSeq - 1) % pool.length]!;
      if (out.length > 0 && bytes + item.payload.length > limits.maxBatchBytes) break;
      bytes += item.payload.length;
      out.push({
        seq: nextSeq,
        sourceId: 'bench',
        receivedAtMs: receivedAt + nextSeq,
        payload: item.payload,
        sha256: item.sha256,
        metadata: { messageType: item.type, triggerEvent: item.trigger, controlId: item.controlId, sendingApplication: 'LAB', sendingFacility: 'GENHOSP', version: '2.5', size: item.payload.length },
      });
      nextSeq++;
    }
    payloadBytes += bytes;
    return out;
  };

  const result = new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => {
      call.cancel();
      fail(new Error(`grpc sink client: ${acked} of ${total} acknowledged after ${timeoutMs} ms`));
    }, timeoutMs);
    const pump = (): void => {
      while (!waitingDrain && inFlight < limits.maxInFlightBatches && nextSeq <= total) {
        const envelopes = makeBatch();
        inFlight++;
        batches++;
        inFlightSizes.push(envelopes.length);
        if (!call.write({ batch: { envelopes } })) {
          waitingDrain = true;
          call.once('drain', () => {
            waitingDrain = false;
            pump();
          });
        }
      }
    };
    call.on('data', (frame: ControlFrame__Output) => {
      if (frame.frame === 'welcome' && frame.welcome) {
        const w = frame.welcome;
        limits = {
          maxBatchMessages: w.maxBatchMessages || DEFAULT_INGEST_LIMITS.maxBatchMessages,
          maxBatchBytes: w.maxBatchBytes || DEFAULT_INGEST_LIMITS.maxBatchBytes,
          maxInFlightBatches: Math.max(1, w.maxInFlightBatches),
        };
        started = performance.now();
        cpu0 = process.cpuUsage();
        pump();
        return;
      }
      if (frame.frame === 'ack' && frame.ack) {
        inFlight--;
        acked += inFlightSizes.shift() ?? 0;
        if (acked >= total) {
          clearTimeout(timer);
          ok(performance.now());
          return;
        }
        pump();
      }
    });
    call.on('error', (err) => {
      clearTimeout(timer);
      if (acked < total) fail(err);
    });
  });
  call.write({ hello: { agentId: 'bench-sink-client', bufferId: `bench-${prefix}`, agentVersion: 'bench' } });
  try {
    const ended = await result;
    const cpu = process.cpuUsage(cpu0);
    const seconds = (ended - started) / 1000;
    return {
      messages: acked,
      batches,
      payloadBytes,
      seconds,
      msgsPerSec: acked / seconds,
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
      maxBatchMessages: limits.maxBatchMessages,
      maxInFlightBatches: limits.maxInFlightBatches,
    };
  } finally {
    call.end();
    call.cancel();
    client.close();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  serverMain().catch((err: unknown) => {
    process.stderr.write(`grpc sink failed: ${String(err)}\n`);
    process.exit(1);
  });
}
