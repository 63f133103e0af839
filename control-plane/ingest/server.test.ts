import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Metadata, credentials, status, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AGENT_ID_METADATA_KEY,
  AGENT_SECRET_METADATA_KEY,
  loadIngestPackage,
  type AgentFrame,
  type ControlFrame__Output,
  type Envelope,
  type IngestClient,
} from '../../proto/index.js';
import { sampleCorpus, sampleEnvelopes, syntheticEnvelope, type TestEnvelope } from '../../test/helpers/envelopes.js';
import { createLogger } from '../log.js';
import { SqliteMessageStore, type MessageSummary } from '../store/index.js';
import { IngestServer } from './index.js';

let dir: string;
let store: SqliteMessageStore;
let server: IngestServer;
let client: IngestClient;
let logLines: string[];
let agent: { id: string; secret: string };

async function startServer(limits = {}): Promise<void> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  server = new IngestServer({ listen: '127.0.0.1:0', limits }, { store, log: createLogger('debug', sink) });
  await server.start();
  const Ingest = loadIngestPackage().ferry.v1.Ingest;
  client = new Ingest(`127.0.0.1:${server.address()!.port}`, credentials.createInsecure());
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-ingest-'));
  logLines = [];
  store = await SqliteMessageStore.open({ dataDir: dir });
  agent = await store.createAgent({ name: 'site', policyId: 'default' });
  await startServer();
});

afterEach(async () => {
  client.close();
  await server.stop(Date.now() + 2000);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A real grpc-js client stream with the frames it received, read in order. */
class TestStream {
  readonly call: ClientDuplexStream<AgentFrame, ControlFrame__Output>;
  readonly status: Promise<StatusObject>;
  private readonly frames: ControlFrame__Output[] = [];
  private waiter: (() => void) | undefined;
  private ended: StatusObject | undefined;

  constructor(creds: { id?: string; secret?: string } | undefined) {
    const md = new Metadata();
    if (creds?.id !== undefined) md.set(AGENT_ID_METADATA_KEY, creds.id);
    if (creds?.secret !== undefined) md.set(AGENT_SECRET_METADATA_KEY, creds.secret);
    this.call = client.Stream(md);
    this.call.on('data', (f: ControlFrame__Output) => {
      this.frames.push(f);
      this.waiter?.();
    });
    this.call.on('error', () => {}); // reported through 'status'
    this.status = new Promise((resolve) =>
      this.call.on('status', (s: StatusObject) => {
        this.ended = s;
        resolve(s);
        this.waiter?.();
      }),
    );
  }

  hello(bufferId = 'buf-1', agentId = agent.id): this {
    this.call.write({ hello: { agentId, bufferId, agentVersion: 'test' } });
    return this;
  }

  batch(envelopes: readonly TestEnvelope[]): this {
    this.call.write({ batch: { envelopes: envelopes.map(toWire) } });
    return this;
  }

  async next(): Promise<ControlFrame__Output> {
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.ended) throw new Error(`stream ended with ${status[this.ended.code]}: ${this.ended.details}`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  async welcome(): Promise<number> {
    const f = await this.next();
    expect(f.frame).toBe('welcome');
    return f.welcome!.committedSeq;
  }

  async ack(): Promise<number> {
    const f = await this.next();
    expect(f.frame).toBe('ack');
    return f.ack!.committedSeq;
  }

  /** Half-closes and waits for the final status. */
  async finish(): Promise<StatusObject> {
    this.call.end();
    return this.status;
  }
}

function toWire(e: TestEnvelope): Envelope {
  return { seq: e.seq, sourceId: e.sourceId, receivedAtMs: e.receivedAtMs, payload: e.payload, sha256: e.sha256, metadata: { ...e.metadata, size: e.payload.length } };
}

/** Opens a stream with the test agent's credentials, other ones, or (null) none. */
function open(creds: { id?: string; secret?: string } | null = agent): TestStream {
  return new TestStream(creds ?? undefined);
}

async function allStored(): Promise<MessageSummary[]> {
  const out: MessageSummary[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await store.listMessages({ limit: 1000, ...(cursor ? { cursor } : {}) });
    out.push(...page.items);
    if (!page.nextCursor) return out;
    cursor = page.nextCursor;
  }
}

describe('IngestServer: authentication', () => {
  it('refuses missing, partial, wrong, unknown and revoked credentials with UNAUTHENTICATED, logging no secret', async () => {
    const other = await store.createAgent({ name: 'revoked-site', policyId: 'default' });
    await store.revokeAgent(other.id);
    const cases: Record<string, { id?: string; secret?: string } | null> = {
      none: null,
      'id only': { id: agent.id },
      'secret only': { secret: agent.secret },
      'wrong secret': { id: agent.id, secret: randomBytes(32).toString('base64url') },
      "another agent's secret": { id: agent.id, secret: other.secret },
      'unknown agent': { id: 'no-such-agent', secret: agent.secret },
      revoked: { id: other.id, secret: other.secret },
    };
    for (const [name, creds] of Object.entries(cases)) {
      const s = open(creds).hello('buf-1', creds?.id ?? agent.id).batch(sampleEnvelopes(1, 3));
      const st = await s.status;
      expect(status[st.code], name).toBe('UNAUTHENTICATED');
      expect(st.details, name).not.toContain(agent.secret);
    }
    expect(server.counters.messagesStored).toBe(0);
    expect(await allStored()).toHaveLength(0);
    const logs = logLines.join('\n');
    expect(logs).not.toContain(agent.secret);
    expect(logs).not.toContain(other.secret);
    expect(logs).toContain('"reason":"revoked"');
    expect(logs).toContain('"reason":"wrong_secret"');
  });

  it('refuses a Hello naming another agent (PERMISSION_DENIED) and a stream that does not start with Hello (INVALID_ARGUMENT)', async () => {
    const other = await store.createAgent({ name: 'other', policyId: 'default' });
    const impostor = open().hello('buf-1', other.id).batch(sampleEnvelopes(1, 2));
    expect(status[(await impostor.status).code]).toBe('PERMISSION_DENIED');
    const noHello = open().batch(sampleEnvelopes(1, 2));
    expect(status[(await noHello.status).code]).toBe('INVALID_ARGUMENT');
    const twice = open().hello();
    await twice.welcome();
    twice.hello();
    expect(status[(await twice.status).code]).toBe('INVALID_ARGUMENT');
    const noBuffer = open().hello('');
    expect(status[(await noBuffer.status).code]).toBe('INVALID_ARGUMENT');
    expect(await allStored()).toHaveLength(0);
  });
});

describe('IngestServer: streaming', () => {
  it('welcomes with the committed seq and limits, acknowledges each batch in order, and resumes after a reconnect', async () => {
    const s = open().hello();
    const welcome = await s.next();
    expect(welcome.welcome).toEqual({ committedSeq: 0, maxBatchMessages: 512, maxBatchBytes: 4 * 1024 * 1024, maxInFlightBatches: 4 });
    s.batch(sampleEnvelopes(1, 10)).batch(sampleEnvelopes(11, 10)).batch(sampleEnvelopes(21, 5));
    expect([await s.ack(), await s.ack(), await s.ack()]).toEqual([10, 20, 25]);
    expect(status[(await s.finish()).code]).toBe('OK');

    const again = open().hello();
    expect(await again.welcome()).toBe(25);
    // Resending what was committed stores nothing twice; the Ack still says how far it is committed.
    again.batch(sampleEnvelopes(11, 10)).batch(sampleEnvelopes(21, 10)).batch(sampleEnvelopes(1, 5));
    expect([await again.ack(), await again.ack(), await again.ack()]).toEqual([25, 30, 30]);
    await again.finish();
    // The agent's seqs count per buffer: a new buffer (a reinstall) starts from 0.
    const otherBuffer = open().hello('buf-2');
    expect(await otherBuffer.welcome()).toBe(0);
    await otherBuffer.finish();
    const stored = await allStored();
    expect(stored.map((m) => m.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(server.counters).toMatchObject({ messagesStored: 30, duplicates: 20, batches: 6 });
  });

  it('fails a batch whose seqs are not strictly increasing with INVALID_ARGUMENT and stores nothing of it', async () => {
    const s = open().hello();
    await s.welcome();
    s.batch(sampleEnvelopes(1, 5));
    expect(await s.ack()).toBe(5);
    const [a, b, c] = sampleEnvelopes(6, 3) as [TestEnvelope, TestEnvelope, TestEnvelope];
    s.batch([a, c, b]);
    const st = await s.status;
    expect(status[st.code]).toBe('INVALID_ARGUMENT');
    expect(st.details).toContain('strictly increasing');
    expect((await allStored()).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('fails a batch with a corrupted payload with DATA_LOSS, stores none of it, and logs no content', async () => {
    const canary = `CANARY${randomBytes(6).toString('hex').toUpperCase()}`;
    const s = open().hello();
    await s.welcome();
    const batch = Array.from({ length: 20 }, (_, i) => syntheticEnvelope(i + 1, { patientName: `${canary}^X` }));
    const bad = batch[13]!;
    const flipped = Buffer.from(bad.payload);
    flipped[100] = flipped[100]! ^ 0x20;
    batch[13] = { ...bad, payload: flipped };
    s.batch(batch);
    const st = await s.status;
    expect(status[st.code]).toBe('DATA_LOSS');
    expect(st.details).toContain('seq 14');
    expect(st.details).not.toContain(canary);
    expect(await allStored()).toHaveLength(0);
    expect(await store.committedSeq(agent.id, 'buf-1')).toBe(0);
    const logs = logLines.join('\n');
    expect(logs).toContain('does not match its sha256');
    expect(logs).not.toContain(canary);
    // A clean resend of the same seqs on a new stream goes through.
    const retry = open().hello();
    expect(await retry.welcome()).toBe(0);
    retry.batch(Array.from({ length: 20 }, (_, i) => syntheticEnvelope(i + 1, { patientName: `${canary}^X` })));
    expect(await retry.ack()).toBe(20);
    await retry.finish();
    expect(logLines.join('\n')).not.toContain(canary);
  });

  it('refuses a batch over the announced max_batch_messages', async () => {
    await server.stop(Date.now() + 1000);
    client.close();
    await startServer({ maxBatchMessages: 8 });
    const s = open().hello();
    expect((await s.next()).welcome?.maxBatchMessages).toBe(8);
    s.batch(sampleEnvelopes(1, 8));
    expect(await s.ack()).toBe(8);
    s.batch(sampleEnvelopes(9, 9));
    expect(status[(await s.status).code]).toBe('INVALID_ARGUMENT');
    expect(await allStored()).toHaveLength(8);
  });

  it('delivers 10,000 messages in batches of 500 with several in flight: byte-identical, exactly once, in order per source', async () => {
    const sources = ['adt-main', 'lab-drop', 'rad'];
    const all = sampleEnvelopes(1, 10_000, { sources });
    const batches = Array.from({ length: 20 }, (_, i) => all.slice(i * 500, (i + 1) * 500));
    const s = open().hello('buf-big');
    expect(await s.welcome()).toBe(0);
    const window = 4;
    const acks: number[] = [];
    let sent = 0;
    while (sent < Math.min(window, batches.length)) s.batch(batches[sent++]!);
    while (acks.length < batches.length) {
      acks.push(await s.ack());
      if (sent < batches.length) s.batch(batches[sent++]!);
    }
    expect(acks).toEqual(batches.map((b) => b[b.length - 1]!.seq));
    expect(status[(await s.finish()).code]).toBe('OK');

    const stored = await allStored();
    expect(stored).toHaveLength(10_000);
    expect(new Set(stored.map((m) => m.seq)).size).toBe(10_000);
    for (const source of sources) {
      const seqs = stored.filter((m) => m.sourceId === source).map((m) => m.seq);
      expect(seqs).toEqual(all.filter((e) => e.sourceId === source).map((e) => e.seq));
    }
    const corpus = sampleCorpus();
    for (const m of stored) {
      const e = all[m.seq - 1]!;
      expect(m.sha256).toBe(e.sha256.toString('hex'));
      // Every payload is read back and compared byte for byte (each sample file recurs ~135 times).
      const payload = await store.getPayload(m.id);
      if (!payload?.equals(e.payload)) throw new Error(`seq ${m.seq}: stored bytes differ from the ${corpus.length}-file corpus entry`);
    }
    expect(await store.committedSeq(agent.id, 'buf-big')).toBe(10_000);
  });

  it('slows a sender that ignores the in-flight window (reading pauses) instead of failing it', async () => {
    const s = open().hello();
    await s.welcome();
    const batches = Array.from({ length: 40 }, (_, i) => sampleEnvelopes(i * 50 + 1, 50));
    for (const b of batches) s.batch(b);
    const acks: number[] = [];
    for (let i = 0; i < batches.length; i++) acks.push(await s.ack());
    expect(acks).toEqual(batches.map((_, i) => (i + 1) * 50));
    expect(status[(await s.finish()).code]).toBe('OK');
    expect(await allStored()).toHaveLength(2000);
  });

  it('ends an older stream of the same agent with ABORTED when a newer one says Hello', async () => {
    const first = open().hello();
    await first.welcome();
    first.batch(sampleEnvelopes(1, 3));
    expect(await first.ack()).toBe(3);
    const second = open().hello();
    expect(await second.welcome()).toBe(3);
    expect(status[(await first.status).code]).toBe('ABORTED');
    second.batch(sampleEnvelopes(4, 3));
    expect(await second.ack()).toBe(6);
    await second.finish();
  });

  it('reports which agents have a stream open (after Hello), and forgets them when it ends', async () => {
    expect(server.connectedAgents().size).toBe(0);
    const s = open();
    expect(server.connectedAgents().size).toBe(0);
    s.hello('buf-9');
    await s.welcome();
    expect([...server.connectedAgents()]).toEqual([[agent.id, { bufferId: 'buf-9' }]]);
    await s.finish();
    await expect.poll(() => server.connectedAgents().size).toBe(0);
  });

  it('ends an open stream with UNAUTHENTICATED when the agent is disconnected (credentials revoked)', async () => {
    expect(server.disconnect(agent.id, 'revoked')).toBe(false);
    const s = open().hello();
    await s.welcome();
    s.batch(sampleEnvelopes(1, 5));
    expect(await s.ack()).toBe(5);
    expect(server.disconnect(agent.id, 'agent credentials revoked')).toBe(true);
    expect(status[(await s.status).code]).toBe('UNAUTHENTICATED');
    await expect.poll(() => server.connectedAgents().size).toBe(0);
    expect(await allStored()).toHaveLength(5);
  });
});

describe('IngestServer: lifecycle', () => {
  it('reports its bound address and health, and on stop ends open streams with UNAVAILABLE well before the deadline', async () => {
    expect(server.address()).toEqual({ host: '127.0.0.1', port: expect.any(Number) });
    expect(server.health().state).toBe('running');
    const s = open().hello();
    await s.welcome();
    s.batch(sampleEnvelopes(1, 50));
    expect(await s.ack()).toBe(50);
    const started = Date.now();
    await server.stop(Date.now() + 10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(status[(await s.status).code]).toBe('UNAVAILABLE');
    expect(server.health().state).toBe('stopped');
    expect(server.address()).toBeUndefined();
    expect(await allStored()).toHaveLength(50);
    // The same server object starts again (on a new port), for restart tests.
    client.close();
    await startServer();
    const again = open().hello();
    expect(await again.welcome()).toBe(50);
    await again.finish();
  });
});
