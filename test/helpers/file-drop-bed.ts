// Shared set-up for the file_drop and import tests: a real buffer in a temporary folder, a
// logger whose lines a test can read, and polling with a generous deadline.

import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AgentMetrics } from '../../agent/admin/metrics.js';
import { Keyring, MessageBuffer } from '../../agent/buffer/index.js';
import { createLogger, type Logger } from '../../agent/log.js';

export interface TestBed {
  readonly dir: string;
  readonly buffer: MessageBuffer;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  /** Every log line so far, parsed. */
  readonly lines: Record<string, unknown>[];
}

export async function makeTestBed(prefix: string, options: { maxBytes?: number } = {}): Promise<TestBed> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, 'data'), { mode: 0o700 });
  const keyring = Keyring.loadOrCreate(join(dir, 'data', 'buffer-keys.json'));
  const buffer = await MessageBuffer.open({ path: join(dir, 'data', 'buffer.db'), keyring, maxBytes: options.maxBytes ?? 1024 ** 3 });
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger('debug', sink);
  return { dir, buffer, metrics: new AgentMetrics(() => buffer.stats(), { processMetrics: false }), log, lines };
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
