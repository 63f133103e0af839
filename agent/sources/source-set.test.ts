// The source reconciler on real MLLP listeners and a real buffer: untouched sources keep their
// listener object, a change that cannot start falls back to the last good config (also when the
// old one had to stop first), and removed sources release their port.

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { realisticMessage } from '../../test/helpers/messages.js';
import { mllpSourceSchema } from '../../proto/policy/index.js';
import { AgentMetrics } from '../admin/index.js';
import { Keyring, MessageBuffer } from '../buffer/index.js';
import { createLogger } from '../log.js';
import { MllpClient, readAck } from './mllp/client.js';
import { SourceSet, createSource } from './index.js';

let dir: string;
let buffer: MessageBuffer;
let set: SourceSet;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

const mllp = (id: string, extra: Record<string, unknown>) => mllpSourceSchema.parse({ id, type: 'mllp', listen: '127.0.0.1:0', ...extra });

async function ack(port: number, cid: string): Promise<string> {
  const c = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 10_000 });
  try {
    return readAck(await c.send(realisticMessage(cid, 1))).code;
  } finally {
    await c.close();
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-sourceset-'));
  buffer = await MessageBuffer.open({ path: join(dir, 'b.db'), keyring: Keyring.loadOrCreate(join(dir, 'k.json')), maxBytes: 1 << 26 });
  const metrics = new AgentMetrics(() => buffer.stats(), { processMetrics: false });
  set = new SourceSet({ deps: { buffer, log: createLogger('silent'), metrics }, create: createSource, stopTimeoutMs: 5000 });
});

afterEach(async () => {
  await set.stopAll(Date.now() + 5000);
  await buffer.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SourceSet', () => {
  it('starts, keeps untouched sources as they are, and stops removed ones', async () => {
    const port = await freePort();
    const r1 = await set.apply([mllp('a', { listen: `127.0.0.1:${port}` }), mllp('b', {})]);
    expect(r1).toMatchObject({ started: ['a', 'b'], failed: [] });
    const a = set.list()[0];
    const r2 = await set.apply([mllp('a', { listen: `127.0.0.1:${port}` })]);
    expect(r2).toMatchObject({ stopped: ['b'], unchanged: ['a'], started: [], failed: [] });
    expect(set.list()[0]).toBe(a);
    expect(await ack(port, 'A1')).toBe('AA');
  });

  it('falls back to the last good config when a same-port change cannot start', async () => {
    const port = await freePort();
    await set.apply([mllp('a', { listen: `127.0.0.1:${port}` })]);
    // Same listen (so the old one must stop first), but a TLS certificate that does not exist.
    const broken = mllp('a', { listen: `127.0.0.1:${port}`, tls: { cert_file: join(dir, 'missing.pem'), key_file: join(dir, 'missing.key') } });
    const r = await set.apply([broken]);
    expect(r.failed).toEqual([expect.objectContaining({ id: 'a', path: 'sources[0]', kept: 'last_good' })]);
    expect(set.configs()[0]).toEqual(mllp('a', { listen: `127.0.0.1:${port}` }));
    expect(set.errors()).toHaveLength(1);
    expect(await ack(port, 'A2')).toBe('AA');
    // A later good apply clears the error.
    const r2 = await set.apply([mllp('a', { listen: `127.0.0.1:${port}`, max_connections: 5 })]);
    expect(r2).toMatchObject({ restarted: ['a'], failed: [] });
    expect(set.errors()).toEqual([]);
  });

  it('reports an added source that cannot start and runs the rest', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as { port: number }).port;
    try {
      const r = await set.apply([mllp('x', { listen: `127.0.0.1:${busy}` }), mllp('y', {})]);
      expect(r.started).toEqual(['y']);
      expect(r.failed).toEqual([expect.objectContaining({ id: 'x', type: 'mllp', code: 'listen_failed', kept: 'none' })]);
      expect(set.list().map((s) => s.config.id)).toEqual(['y']);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
