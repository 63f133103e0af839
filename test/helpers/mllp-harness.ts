// An in-process mllp source on real parts (keyring, encrypted buffer, metrics, pino) listening on
// 127.0.0.1:0, for the source tests. Everything it opens is closed by close().

import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { AgentMetrics } from '../../agent/admin/metrics.js';
import { Keyring, MessageBuffer, type StoredMessage } from '../../agent/buffer/index.js';
import { mllpSourceSchema } from '../../proto/policy/index.js';
import { createLogger } from '../../agent/log.js';
import { MllpClient } from '../../agent/sources/mllp/client.js';
import type { FrameSink } from '../../agent/sources/mllp/frame-handler.js';
import { MllpSource } from '../../agent/sources/mllp/source.js';
import { sleep, waitFor as pollFor } from './wait.js';

export interface HarnessOptions {
  /** mllp source keys over { id: 'test', type: 'mllp', listen: '127.0.0.1:0' }, parsed by the schema. */
  readonly source?: Record<string, unknown>;
  /** Buffer capacity (default 256 MiB). */
  readonly maxBytes?: number;
  /** Log level; lines are kept in `logs` (default 'silent'). */
  readonly logLevel?: 'silent' | 'trace' | 'debug' | 'info' | 'warn';
  /** Wraps the buffer (e.g. to hold commits); the source gets what this returns. */
  readonly sink?: (buffer: MessageBuffer) => FrameSink;
}

export interface Harness {
  readonly dir: string;
  readonly buffer: MessageBuffer;
  readonly metrics: AgentMetrics;
  readonly source: MllpSource;
  readonly port: number;
  /** Every log line written so far (raw JSON text). */
  readonly logs: string[];
  /** An MllpClient on the source; destroyed by close() if still open. */
  client(options?: { tls?: ConnectionOptions; responseTimeoutMs?: number }): Promise<MllpClient>;
  /** A raw socket on the source (connected); destroyed by close() if still open. */
  raw(options?: { allowHalfOpen?: boolean }): Promise<Socket>;
  /** Every stored row, decrypted, in seq order. */
  stored(): Promise<StoredMessage[]>;
  /** Stops the source (if still running), closes the buffer, removes the temp dir. */
  close(): Promise<void>;
}

export async function startSource(options: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mllp-'));
  const keyring = Keyring.loadOrCreate(join(dir, 'keys.json'));
  const buffer = await MessageBuffer.open({ path: join(dir, 'buffer.db'), keyring, maxBytes: options.maxBytes ?? 256 * 1024 * 1024 });
  const metrics = new AgentMetrics(() => buffer.stats(), { processMetrics: false });
  const logs: string[] = [];
  const sinkStream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logs.push(line);
      cb();
    },
  });
  const log = createLogger(options.logLevel ?? 'silent', sinkStream);
  const config = mllpSourceSchema.parse({ id: 'test', type: 'mllp', listen: '127.0.0.1:0', ...options.source });
  const source = new MllpSource(config, { sink: options.sink ? options.sink(buffer) : buffer, log, metrics });
  await source.start();
  const port = source.address()!.port;
  const sockets: Socket[] = [];
  let closed = false;
  return {
    dir,
    buffer,
    metrics,
    source,
    port,
    logs,
    async client(opts = {}) {
      const c = await MllpClient.connect({ host: '127.0.0.1', port, ...(opts.tls ? { tls: { servername: 'localhost', ...opts.tls } } : {}), responseTimeoutMs: opts.responseTimeoutMs ?? 10_000 });
      sockets.push(c.raw);
      return c;
    },
    raw(opts = {}) {
      return new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, allowHalfOpen: opts.allowHalfOpen ?? false }, () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
        sockets.push(s);
      });
    },
    stored() {
      return buffer.readOldest(0, 100_000);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      if (source.health().state === 'running') await source.stop(Date.now() + 5000);
      await buffer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The control id realisticMessage(prefix, n) uses. */
export function controlId(prefix: string, n: number): string {
  return `${prefix}${String(n).padStart(10, '0')}`;
}

/** Polls until check() is true (every 10 ms: in-process sources answer fast); fails with label after timeoutMs. */
export function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, label: string): Promise<void> {
  return pollFor(check, timeoutMs, label, 10);
}

export { sleep };

/** Resolves when the socket has closed (at once if it already has). */
export function closedPromise(socket: Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** Resolves true if the socket closes within ms, false otherwise. */
export async function closesWithin(socket: Socket, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([closedPromise(socket).then(() => true), timeout]);
  clearTimeout(timer);
  return result;
}

/** Value of ferry_mllp_connections_refused_total{reason}. */
export async function refusedCount(metrics: AgentMetrics, reason: string): Promise<number> {
  const m = await metrics.connectionsRefused.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}
