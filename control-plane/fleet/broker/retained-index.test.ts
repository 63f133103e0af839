import { Readable } from 'node:stream';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { indexRetainedByTopic } from './retained-index.js';

interface Persistence {
  storeRetained(packet: object): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

let broker: Aedes | undefined;

afterEach(async () => {
  await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()));
  broker = undefined;
});

/** aedes' own memory persistence, as the embedded bus gets it, with the index applied. */
async function indexedPersistence(): Promise<Persistence> {
  broker = new Aedes();
  await broker.listen();
  const persistence = (broker as unknown as { persistence: Persistence }).persistence;
  indexRetainedByTopic(persistence);
  return persistence;
}

const packet = (topic: string, payload: string): object => ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false });

async function topicsAndPayloads(stream: Readable): Promise<string[]> {
  const out: string[] = [];
  for await (const p of stream) out.push(`${(p as { topic: string }).topic}=${(p as { payload: Buffer }).payload.toString()}`);
  return out.sort();
}

describe('indexRetainedByTopic', () => {
  it('answers exact topics from the index: the latest message, none for an unknown topic, none after an empty payload deletes it', async () => {
    const p = await indexedPersistence();
    for (let i = 0; i < 1000; i++) await p.storeRetained(packet(`ferry/v1/agents/a${i}/policy`, `v1-${i}`));
    await p.storeRetained(packet('ferry/v1/agents/a7/policy', 'v2-7'));
    await p.storeRetained(packet('ferry/v1/agents/a7/status', 's-7'));
    expect(await topicsAndPayloads(p.createRetainedStreamCombi(['ferry/v1/agents/a7/policy', 'ferry/v1/agents/a7/commands']))).toEqual(['ferry/v1/agents/a7/policy=v2-7']);
    expect(await topicsAndPayloads(p.createRetainedStream('ferry/v1/agents/a999/policy'))).toEqual(['ferry/v1/agents/a999/policy=v1-999']);
    expect(await topicsAndPayloads(p.createRetainedStream('ferry/v1/agents/nobody/policy'))).toEqual([]);
    await p.storeRetained(packet('ferry/v1/agents/a7/policy', ''));
    expect(await topicsAndPayloads(p.createRetainedStreamCombi(['ferry/v1/agents/a7/policy']))).toEqual([]);
    // The persistence itself forgot it too (a wildcard goes to its scan).
    expect(await topicsAndPayloads(p.createRetainedStream('ferry/v1/agents/a7/#'))).toEqual(['ferry/v1/agents/a7/status=s-7']);
  });

  it('leaves wildcard filters to the persistence scan, with the same answers as before', async () => {
    const p = await indexedPersistence();
    await p.storeRetained(packet('ferry/v1/agents/a1/policy', 'p1'));
    await p.storeRetained(packet('ferry/v1/agents/a2/policy', 'p2'));
    await p.storeRetained(packet('ferry/v1/agents/a2/status', 's2'));
    expect(await topicsAndPayloads(p.createRetainedStream('ferry/v1/agents/+/policy'))).toEqual(['ferry/v1/agents/a1/policy=p1', 'ferry/v1/agents/a2/policy=p2']);
    // A mixed list goes to the scan as a whole.
    expect(await topicsAndPayloads(p.createRetainedStreamCombi(['ferry/v1/agents/a2/#', 'ferry/v1/agents/a1/policy']))).toEqual([
      'ferry/v1/agents/a1/policy=p1',
      'ferry/v1/agents/a2/policy=p2',
      'ferry/v1/agents/a2/status=s2',
    ]);
  });

  it('does not scan for exact topics (the cost it removes), and still stores everything in the persistence', async () => {
    const calls = { store: 0, scan: 0 };
    const target = {
      storeRetained: (): Promise<void> => (calls.store++, Promise.resolve()),
      createRetainedStream: (): Readable => (calls.scan++, Readable.from([])),
      createRetainedStreamCombi: (): Readable => (calls.scan++, Readable.from([])),
    };
    indexRetainedByTopic(target);
    const p = target as unknown as Persistence;
    for (let i = 0; i < 100; i++) await p.storeRetained(packet(`t/${i}`, 'x'));
    expect(await topicsAndPayloads(p.createRetainedStreamCombi(['t/5', 't/6']))).toEqual(['t/5=x', 't/6=x']);
    expect(calls).toEqual({ store: 100, scan: 0 });
    await topicsAndPayloads(p.createRetainedStream('t/+'));
    expect(calls.scan).toBe(1);
  });

  it('refuses a persistence without the retained-message methods', () => {
    expect(() => indexRetainedByTopic({})).toThrow(/retained-message methods/);
    expect(() => indexRetainedByTopic(undefined)).toThrow(/retained-message methods/);
  });
});
