// The fleet bus's ACL matrix and round trips, against each broker Ferry supports: the embedded
// aedes broker, and (fleet-acl-mosquitto) a Mosquitto process enforcing the files the control
// plane writes. Agent A must not read or write agent B's topics, use wildcards or $SYS, publish
// what only the control plane publishes, or pass as B; its own topics work.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentTopic, type PolicyMessage, type StatusMessage } from '../../proto/fleet/index.js';
import { mosquittoAvailable, startEmbeddedFixture, startMosquittoFixture, type BrokerFixture, type EnrolledAgent } from './broker/test-fixtures.js';
import { connectClient, connectOk, eventually, type TestClient } from '../../test/helpers/mqtt-clients.js';

/** What differs between brokers, stated per broker rather than hidden in the assertions. */
export interface BrokerExpectations {
  /** CONNACK return codes (MQTT 3.1.1). */
  readonly wrongPassword: number;
  readonly unknownAgent: number;
  readonly revoked: number;
  readonly noCredentials: number;
  /** Client id of another agent: refused with this code, or (Mosquitto, use_username_as_clientid) replaced by the username. */
  readonly otherClientId: number | 'replaced';
  /** A forbidden publish: the broker closes the connection (aedes) or acknowledges and drops it (Mosquitto, MQTT 3.1.1). */
  readonly forbiddenPublish: 'closed' | 'acked';
  /**
   * A forbidden subscription: SUBACK 0x80 (aedes), or granted and then filtered message by message
   * with the read ACL (Mosquitto 2.0's acl_file checks reads at delivery, not at SUBSCRIBE).
   */
  readonly forbiddenSubscribe: 128 | 'granted-filtered';
}

const policy = (id: string, version: number): PolicyMessage => ({ policy_id: id, version, config: {}, published_at: new Date().toISOString() });
const status = (agentId: string, online = true, extra: Partial<StatusMessage> = {}): string => JSON.stringify({ agent_id: agentId, online, sent_at: new Date().toISOString(), ...extra });

export function aclMatrix(name: string, start: () => Promise<BrokerFixture>, expect_: BrokerExpectations): void {
  describe(`fleet bus ACL and round trips: ${name}`, () => {
    let fx: BrokerFixture;
    let a: EnrolledAgent;
    let b: EnrolledAgent;
    const open: TestClient[] = [];
    const connectAs = async (agent: EnrolledAgent, extra: { will?: Parameters<typeof connectClient>[1]['will'] } = {}): Promise<TestClient> => {
      const c = await connectOk(fx.url, { clientId: agent.id, username: agent.id, password: agent.secret, ...extra });
      open.push(c);
      return c;
    };
    /** B listening on its own topics, so a leak from A would show up there. */
    const listeningB = async (): Promise<TestClient> => {
      const cb = await connectAs(b);
      expect(await cb.subscribe(agentTopic(b.id, 'commands'))).toBe(1);
      expect(await cb.subscribe(agentTopic(b.id, 'policy'))).toBe(1);
      return cb;
    };
    /** Sends B a command from the control plane and waits for it: everything sent to B before it has arrived (same publisher order). */
    const sentinel = async (cb: TestClient, tag: string): Promise<void> => {
      await fx.bus.publishCommand(b.id, { id: tag, type: 'ping', args: {}, issued_at: new Date().toISOString(), expires_at: new Date(Date.now() + 60_000).toISOString() });
      await eventually(() => cb.received.some((m) => m.payload.includes(`"${tag}"`)), `B receives ${tag}`);
    };

    beforeAll(async () => {
      fx = await start();
      a = await fx.enroll();
      b = await fx.enroll();
    }, 60_000);
    afterAll(async () => {
      await Promise.all(open.map((c) => c.end().catch(() => {})));
      await fx?.close();
    });

    it("A's own topics work: subscribe to policy and commands, publish status, telemetry and command results", async () => {
      const ca = await connectAs(a);
      expect(await ca.subscribe(agentTopic(a.id, 'policy'))).toBe(1);
      expect(await ca.subscribe(agentTopic(a.id, 'commands'))).toBe(1);
      await ca.publish(agentTopic(a.id, 'status'), status(a.id, true, { version: 'acl-own' }), { retain: true });
      await ca.publish(agentTopic(a.id, 'telemetry'), JSON.stringify({ agent_id: a.id, counters: { messages: 3 }, sent_at: new Date().toISOString() }));
      await ca.publish(agentTopic(a.id, 'command-results'), JSON.stringify({ id: 'c-1', status: 'succeeded', result: { pong_at: 'now' }, finished_at: new Date().toISOString() }));
      await eventually(() => fx.events.statuses.some((s) => s.agentId === a.id && s.status.version === 'acl-own'), 'A status reaches the control plane');
      await eventually(() => fx.events.telemetries.some((t) => t.agentId === a.id && t.telemetry.counters.messages === 3), 'A telemetry reaches the control plane');
      await eventually(() => fx.events.results.some((r) => r.agentId === a.id && r.result.id === 'c-1'), 'A command result reaches the control plane');
      await fx.bus.publishCommand(a.id, { id: 'cmd-a', type: 'ping', args: {}, issued_at: new Date().toISOString(), expires_at: new Date(Date.now() + 60_000).toISOString() });
      await eventually(() => ca.received.some((m) => m.topic === agentTopic(a.id, 'commands') && m.payload.includes('"cmd-a"')), 'A receives its command');
      await ca.end();
    });

    it('refuses subscriptions to wildcards, $SYS, other agents and the wrong direction; A sees nothing of B', async () => {
      const ca = await connectAs(a);
      const forbidden = [
        '#',
        '+/+/+/+/+',
        'ferry/v1/agents/+/policy',
        'ferry/v1/agents/+/status',
        `ferry/v1/agents/${b.id}/#`,
        `ferry/v1/agents/${b.id}/policy`,
        `ferry/v1/agents/${b.id}/commands`,
        `ferry/v1/agents/${b.id}/status`,
        '$SYS/#',
        `ferry/v1/agents/${a.id}/#`,
        `ferry/v1/agents/${a.id}/+`,
        `ferry/v1/agents/${a.id}/status`,
      ];
      const granted: Record<string, number> = {};
      for (const filter of forbidden) granted[filter] = await ca.subscribe(filter);
      expect(granted).toEqual(Object.fromEntries(forbidden.map((f) => [f, expect_.forbiddenSubscribe === 128 ? 128 : 1])));
      // The refusals did not cost A its connection, and its own subscription still works.
      expect(await ca.subscribe(agentTopic(a.id, 'policy'))).toBe(1);
      // Retained and live messages of B, and the broker's retained $SYS topics, would arrive through
      // any of the filters above if the broker let them: only A's own policy may.
      await fx.bus.publishPolicy(b.id, policy('p-b', 7));
      await fx.bus.publishCommand(b.id, { id: 'cmd-b', type: 'ping', args: {}, issued_at: new Date().toISOString(), expires_at: new Date(Date.now() + 60_000).toISOString() });
      await fx.bus.publishPolicy(a.id, policy('p-a', 8));
      await eventually(() => ca.received.some((m) => m.payload.includes('"p-a"')), 'A receives its own policy');
      expect([...new Set(ca.received.map((m) => m.topic))]).toEqual([agentTopic(a.id, 'policy')]);
      await ca.end();
    });

    it("A cannot publish to B's commands, policy or status, nor to its own policy or commands, nor $SYS: B and the control plane never see it", async () => {
      const cb = await listeningB();
      const attempts = [
        agentTopic(b.id, 'commands'),
        agentTopic(b.id, 'policy'),
        agentTopic(b.id, 'status'),
        agentTopic(a.id, 'policy'),
        agentTopic(a.id, 'commands'),
        '$SYS/broker/forged',
        'ferry/v1/other',
      ];
      const outcomes: string[] = [];
      for (const topic of attempts) {
        const ca = await connectAs(a);
        const payload = topic.endsWith('status') ? status(b.id, false, { version: 'forged' }) : JSON.stringify({ id: 'forged', type: 'restart', args: {}, issued_at: 'x', expires_at: 'y', policy_id: 'forged', version: 99, config: {}, published_at: 'x' });
        outcomes.push(await ca.tryPublish(topic, payload));
        await ca.end();
      }
      expect(outcomes).toEqual(attempts.map(() => expect_.forbiddenPublish));
      await sentinel(cb, 'sentinel-publish');
      expect(cb.received.filter((m) => m.payload.includes('forged'))).toEqual([]);
      expect(fx.events.statuses.filter((s) => s.agentId === b.id)).toEqual([]);
      // The retained topics of B hold nothing A wrote: a client connecting as B later gets no forged policy.
      const later = await connectAs(b);
      expect(await later.subscribe(agentTopic(b.id, 'policy'))).toBe(1);
      await fx.bus.publishCommand(b.id, { id: 'sentinel-later', type: 'ping', args: {}, issued_at: new Date().toISOString(), expires_at: new Date(Date.now() + 60_000).toISOString() });
      expect(await later.subscribe(agentTopic(b.id, 'commands'))).toBe(1);
      await sentinel(later, 'sentinel-later-2');
      expect(later.received.filter((m) => m.payload.includes('forged'))).toEqual([]);
      await cb.end();
      await later.end();
    });

    it('refuses wrong password, unknown agent, missing credentials and another agent’s client id', async () => {
      const wrong = await connectClient(fx.url, { clientId: a.id, username: a.id, password: `${a.secret}x` });
      expect(wrong).toMatchObject({ ok: false, code: expect_.wrongPassword });
      const unknown = await connectClient(fx.url, { clientId: '00000000-0000-4000-8000-000000000000', username: '00000000-0000-4000-8000-000000000000', password: a.secret });
      expect(unknown).toMatchObject({ ok: false, code: expect_.unknownAgent });
      const none = await connectClient(fx.url, { clientId: a.id });
      expect(none).toMatchObject({ ok: false, code: expect_.noCredentials });
      const cb = await listeningB();
      const asB = await connectClient(fx.url, { clientId: b.id, username: a.id, password: a.secret });
      if (expect_.otherClientId === 'replaced') {
        // The broker uses A's username as its client id: B's session is untouched and keeps receiving.
        expect(asB.ok).toBe(true);
        if (asB.ok) open.push(asB.client);
      } else {
        expect(asB).toMatchObject({ ok: false, code: expect_.otherClientId });
      }
      await sentinel(cb, 'sentinel-clientid');
      expect(cb.client.connected).toBe(true);
      // No log line carries a secret.
      expect(fx.logLines.filter((l) => l.includes(a.secret) || l.includes(b.secret))).toEqual([]);
      await cb.end();
    });

    it("A's last will cannot speak for B: a will on B's status topic never reaches the control plane", async () => {
      const before = fx.events.statuses.filter((s) => s.agentId === b.id).length;
      const r = await connectClient(fx.url, { clientId: a.id, username: a.id, password: a.secret, will: { topic: agentTopic(b.id, 'status'), payload: Buffer.from(status(b.id, false, { reason: 'forged-will' })), qos: 1, retain: true } });
      if (r.ok) {
        r.client.destroy();
        await r.client.closed;
      }
      // A's own legitimate status after the drop: once it is in, a will published at the drop would be too.
      const ca = await connectAs(a);
      await ca.publish(agentTopic(a.id, 'status'), status(a.id, true, { version: 'after-will' }));
      await eventually(() => fx.events.statuses.some((s) => s.status.version === 'after-will'), 'A status after the forged will');
      expect(fx.events.statuses.filter((s) => s.agentId === b.id).length).toBe(before);
      await ca.end();
    });

    it('round trip: a retained policy reaches an agent that connects later; its last will reaches the control plane on an abrupt drop', async () => {
      await fx.bus.publishPolicy(a.id, policy('p-retained', 42));
      const ca = await connectAs(a, { will: { topic: agentTopic(a.id, 'status'), payload: Buffer.from(status(a.id, false, { reason: 'lost' })), qos: 1, retain: true } });
      expect(await ca.subscribe(agentTopic(a.id, 'policy'))).toBe(1);
      await eventually(() => ca.received.some((m) => m.payload.includes('"p-retained"')), 'A receives the retained policy');
      const got = ca.received.find((m) => m.payload.includes('"p-retained"'))!;
      expect(got.retain).toBe(true);
      expect(JSON.parse(got.payload)).toMatchObject({ policy_id: 'p-retained', version: 42 });
      ca.destroy();
      await eventually(() => fx.events.statuses.some((s) => s.agentId === a.id && s.status.online === false && s.status.reason === 'lost'), 'the last will marks A offline');
    });

    it('revocation: the agent cannot connect any more', async () => {
      const c = await fx.enroll();
      const cc = await connectAs(c);
      await fx.bus.publishPolicy(c.id, policy('p-c', 1));
      await fx.revoke(c.id);
      const again = await connectClient(fx.url, { clientId: c.id, username: c.id, password: c.secret });
      expect(again).toMatchObject({ ok: false, code: expect_.revoked });
      if (fx.kind === 'embedded') {
        await cc.closed; // the embedded broker also drops the open connection at once
        expect(fx.bus.connectedAgents()?.has(c.id)).toBe(false);
        expect(fx.bus.counters().connections_refused).toBeGreaterThan(0);
      } else {
        await cc.end();
      }
    });
  });
}

aclMatrix('embedded aedes', () => startEmbeddedFixture(), {
  wrongPassword: 4,
  unknownAgent: 4,
  revoked: 5,
  noCredentials: 5,
  otherClientId: 5,
  forbiddenPublish: 'closed',
  forbiddenSubscribe: 128,
});

// Mosquitto 2 with the files the control plane writes (skipped only where no mosquitto binary exists; CI installs it).
describe.skipIf(!mosquittoAvailable())('with Mosquitto', () => {
  aclMatrix('mosquitto (control-plane-written password and ACL files)', () => startMosquittoFixture(), {
    wrongPassword: 5,
    unknownAgent: 5,
    revoked: 5,
    noCredentials: 5,
    otherClientId: 'replaced',
    forbiddenPublish: 'acked',
    forbiddenSubscribe: 'granted-filtered',
  });
});
