// MQTT clients for fleet tests, as an agent (or an attacker) would connect: mqtt.js over a real
// socket, no reconnects, and the broker's answer kept as data (CONNACK code, SUBACK codes,
// received messages) so tests assert on codes and counts.

import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export interface Received {
  readonly topic: string;
  readonly payload: string;
  readonly retain: boolean;
}

export interface TestClient {
  readonly client: MqttClient;
  readonly received: Received[];
  subscribe(filter: string): Promise<number>;
  publish(topic: string, payload: string, options?: { retain?: boolean }): Promise<void>;
  /** QoS 1 publish that may be refused: 'acked' (PUBACK; a broker may still drop it silently) or 'closed' (the broker cut the connection). */
  tryPublish(topic: string, payload: string): Promise<'acked' | 'closed'>;
  /** Resolves once the broker has closed (or we closed) the connection. */
  readonly closed: Promise<void>;
  end(): Promise<void>;
  /** Drops the TCP connection without DISCONNECT, as a crash or a pulled cable would (the last will fires). */
  destroy(): void;
}

export type ConnectOutcome = { readonly ok: true; readonly client: TestClient } | { readonly ok: false; readonly code: number | string };

/** Connects once; resolves with the client or with the CONNACK return code (or error code) that refused it. */
export function connectClient(url: string, options: { clientId: string; username?: string; password?: string; will?: IClientOptions['will']; protocolVersion?: 4 | 5 }): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, {
      clientId: options.clientId,
      username: options.username,
      password: options.password,
      will: options.will,
      protocolVersion: options.protocolVersion ?? 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 60,
    });
    const received: Received[] = [];
    client.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString('utf8'), retain: packet.retain }));
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    let settled = false;
    client.once('connect', () => {
      settled = true;
      resolve({
        ok: true,
        client: {
          client,
          received,
          closed,
          async subscribe(filter) {
            try {
              const granted = await client.subscribeAsync(filter, { qos: 1 });
              return granted[0]?.qos ?? -1;
            } catch (err) {
              // mqtt.js rejects a SUBACK failure (0x80 / reason >= 0x80) and carries the packet.
              const packet = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet;
              const first = packet?.granted?.[0];
              if (first === undefined) throw err;
              return typeof first === 'number' ? first : first.qos;
            }
          },
          async publish(topic, payload, o) {
            await client.publishAsync(topic, payload, { qos: 1, retain: o?.retain ?? false });
          },
          tryPublish(topic, payload) {
            return Promise.race([
              client.publishAsync(topic, payload, { qos: 1 }).then(
                () => 'acked' as const,
                () => 'closed' as const,
              ),
              closed.then(() => 'closed' as const),
            ]);
          },
          async end() {
            await client.endAsync(true);
          },
          destroy() {
            client.stream.destroy();
          },
        },
      });
    });
    client.once('error', (err: Error & { code?: number | string }) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve({ ok: false, code: err.code ?? err.message });
    });
    void closed.then(() => {
      if (settled) return;
      settled = true;
      resolve({ ok: false, code: 'closed' });
    });
  });
}

export async function connectOk(url: string, options: Parameters<typeof connectClient>[1]): Promise<TestClient> {
  const r = await connectClient(url, options);
  if (!r.ok) throw new Error(`expected the broker to accept ${options.clientId}, it refused with ${r.code}`);
  return r.client;
}

/** Polls until check() holds or the deadline passes (generous: loaded CI machines). */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for: ${what}`);
}
