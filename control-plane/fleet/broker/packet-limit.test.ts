import { connect } from 'node:net';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { connectOk, eventually } from '../../../test/helpers/mqtt-clients.js';
import { PacketSizeScanner } from './packet-limit.js';
import { startEmbeddedFixture, type BrokerFixture } from './test-fixtures.js';

const publishPacket = (payloadBytes: number, topic = 't/x'): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(payloadBytes, 0x61), qos: 0, retain: false, dup: false }) as Buffer;

/** Splits bytes at the given cut points (any split a TCP stream may produce). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

describe('PacketSizeScanner', () => {
  it('lets any split of packets within the limit through, and stops at the first larger one (property)', () => {
    const limit = 4096;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 6000 }), { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (sizes, cuts) => {
        const packets = sizes.map((n) => publishPacket(n));
        const firstTooBig = packets.findIndex((p) => p.length > limit);
        const stream = Buffer.concat(packets);
        const scanner = new PacketSizeScanner(limit);
        let consumed = 0;
        let stoppedAt: number | undefined;
        for (const chunk of split(stream, cuts)) {
          if (!scanner.feed(chunk)) {
            stoppedAt = consumed + chunk.length;
            break;
          }
          consumed += chunk.length;
        }
        if (firstTooBig === -1) return stoppedAt === undefined;
        // It stops, and no later than the chunk that completes the big packet's header.
        const bigStart = packets.slice(0, firstTooBig).reduce((n, p) => n + p.length, 0);
        return stoppedAt !== undefined && stoppedAt - 1 >= bigStart && consumed <= bigStart + 5;
      }),
    );
  });

  it('refuses a length with a fifth continuation byte (malformed)', () => {
    expect(new PacketSizeScanner(1 << 30).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(false);
  });
});

describe('embedded broker limits', () => {
  let fx: BrokerFixture | undefined;
  afterEach(async () => {
    await fx?.close();
    fx = undefined;
  });

  it('closes a connection that sends a packet over max_packet_bytes, counts it, and keeps serving others', async () => {
    fx = await startEmbeddedFixture({ maxPacketBytes: 8 * 1024 });
    const a = await fx.enroll();
    const b = await fx.enroll();
    const ca = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.secret });
    const cb = await connectOk(fx.url, { clientId: b.id, username: b.id, password: b.secret });
    ca.client.publish(`ferry/v1/agents/${a.id}/telemetry`, Buffer.alloc(64 * 1024, 0x7b), { qos: 0 });
    await ca.closed;
    expect(fx.bus.counters().packets_too_large).toBe(1);
    await cb.publish(`ferry/v1/agents/${b.id}/status`, JSON.stringify({ agent_id: b.id, online: true, sent_at: new Date().toISOString() }));
    await eventually(() => fx!.events.statuses.some((s) => s.agentId === b.id), 'B still gets through');
    await cb.end();
  });

  it('drops a connection that never sends CONNECT after connect_timeout_secs', async () => {
    fx = await startEmbeddedFixture({ connectTimeoutSecs: 0.3 });
    const port = Number(new URL(fx.url).port);
    const socket = connect(port, '127.0.0.1');
    const closed = await new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 15_000).unref();
    });
    expect(closed).toBe(true);
  });
});
