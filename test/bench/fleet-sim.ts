// Child process of the fleet benchmark (fleet.ts): simulates many agents with raw MQTT 3.1.1 over
// plain sockets (mqtt-packet framing, no mqtt.js: a full client per agent is too heavy at 5,000).
// Each agent connects with its real enrolled credentials and a last will, subscribes to its policy
// and commands, acknowledges what it receives, and every second publishes a retained QoS 1 status
// and a QoS 0 telemetry message. The status carries its send time (version "bench-<ms>") so the
// parent can measure publish → visible in the control plane's API.
//
// Connecting: agents start at a controlled rate (the parent's `rate`, per second, for this process)
// so a step measures the steady state, not the storm. A connection that is refused at TCP level,
// reset, silent past CONNECT_TIMEOUT_MS or dropped later is retried like a real agent: exponential
// backoff with full jitter (random in [0, min(cap, base·2^attempt)]), so retries never synchronise.
//
// IPC: parent → {type:'add', url, rate, agents:[{id, secret}]} (queues them), {type:'stop'};
// child → {type:'progress', ...SimCounters, cpu_secs, connect_ms: [new CONNECT→CONNACK samples]}.

import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

interface SimAgent {
  readonly id: string;
  readonly secret: string;
}

export interface SimCounters {
  /** Agents with an accepted session right now. */
  connected: number;
  /** CONNACKs with a refusal code (wrong credentials would show here: the run is then invalid). */
  refused: number;
  /** Connection attempts made (first ones and retries). */
  attempts: number;
  /** Retries after a failed or dropped connection. */
  reconnects: number;
  /** Sessions that were accepted and later closed by the other side. */
  drops: number;
  /** Attempts with no CONNACK within CONNECT_TIMEOUT_MS. */
  connectTimeouts: number;
  /** Socket errors, by code (ECONNRESET, ECONNREFUSED, ...). */
  errors: Record<string, number>;
  statusSent: number;
  pubacks: number;
}

const CONNECT_TIMEOUT_MS = 30_000;
const RETRY_BASE_MS = 500;
const RETRY_CAP_MS = 30_000;

const counters: SimCounters = { connected: 0, refused: 0, attempts: 0, reconnects: 0, drops: 0, connectTimeouts: 0, errors: {}, statusSent: 0, pubacks: 0 };
let connectSamples: number[] = [];
let stopping = false;
const sockets = new Set<Socket>();
let messageId = 1;
const nextId = (): number => (messageId = (messageId % 65000) + 1);

/** Full jitter: uniform in [0, min(cap, base·2^attempt)]. */
const backoffMs = (attempt: number): number => Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(attempt, 16));

function startAgent(host: string, port: number, agent: SimAgent, attempt: number): void {
  counters.attempts++;
  const socket = connect({ host, port });
  socket.setNoDelay(true);
  sockets.add(socket);
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let refused = false;
  let accepted = false;
  let timer: NodeJS.Timeout | undefined;
  let ping: NodeJS.Timeout | undefined;
  const connectSentAt = performance.now();
  const connackTimer = setTimeout(() => {
    counters.connectTimeouts++;
    socket.destroy();
  }, CONNECT_TIMEOUT_MS);
  const statusTopic = `ferry/v1/agents/${agent.id}/status`;
  const telemetryTopic = `ferry/v1/agents/${agent.id}/telemetry`;
  const startedAt = new Date().toISOString();
  const write = (packet: Parameters<typeof mqttPacket.generate>[0]): void => {
    if (!socket.destroyed) socket.write(mqttPacket.generate(packet));
  };
  const tick = (): void => {
    const now = Date.now();
    const status = { agent_id: agent.id, online: true, version: `bench-${now}`, started_at: startedAt, heartbeat_secs: 15, buffer: { depth: 0, bytes: 0, max_bytes: 1e9, oldest_pending_age_secs: null, full: false }, uplink: { state: 'connected' }, sources: [], sent_at: new Date(now).toISOString() };
    write({ cmd: 'publish', topic: statusTopic, payload: Buffer.from(JSON.stringify(status)), qos: 1, retain: true, dup: false, messageId: nextId() });
    write({ cmd: 'publish', topic: telemetryTopic, payload: Buffer.from(JSON.stringify({ agent_id: agent.id, counters: { messages: now % 1000 }, sent_at: new Date(now).toISOString() })), qos: 0, retain: false, dup: false });
    counters.statusSent++;
  };
  parser.on('packet', (p) => {
    switch (p.cmd) {
      case 'connack':
        clearTimeout(connackTimer);
        if (p.returnCode !== 0) {
          refused = true;
          counters.refused++;
          socket.destroy();
          return;
        }
        accepted = true;
        counters.connected++;
        connectSamples.push(performance.now() - connectSentAt);
        write({ cmd: 'subscribe', messageId: nextId(), subscriptions: [{ topic: `ferry/v1/agents/${agent.id}/policy`, qos: 1 }, { topic: `ferry/v1/agents/${agent.id}/commands`, qos: 1 }] });
        // Spread the agents over the second, as real agents' clocks are.
        timer = setTimeout(() => {
          tick();
          timer = setInterval(tick, 1000);
        }, Math.random() * 1000);
        // Keepalive is 60 s; the publishes count as activity, a PINGREQ every 30 s keeps it honest.
        ping = setInterval(() => write({ cmd: 'pingreq' }), 30_000);
        break;
      case 'puback':
        counters.pubacks++;
        break;
      case 'publish':
        if (p.qos === 1 && p.messageId !== undefined) write({ cmd: 'puback', messageId: p.messageId });
        break;
      default:
        break;
    }
  });
  socket.on('data', (d) => parser.parse(d));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    const code = err.code ?? 'other';
    counters.errors[code] = (counters.errors[code] ?? 0) + 1;
  });
  socket.on('close', () => {
    clearTimeout(connackTimer);
    clearTimeout(timer);
    clearInterval(timer);
    clearInterval(ping);
    sockets.delete(socket);
    if (stopping || refused) return;
    if (accepted) {
      counters.connected--;
      counters.drops++;
    }
    counters.reconnects++;
    // A session that had been accepted starts its backoff afresh, as mqtt.js and the agent do.
    const next = accepted ? 0 : attempt + 1;
    setTimeout(() => startAgent(host, port, agent, next), backoffMs(next));
  });
  write({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: agent.id,
    keepalive: 60,
    username: agent.id,
    password: Buffer.from(agent.secret),
    will: { topic: statusTopic, payload: Buffer.from(JSON.stringify({ agent_id: agent.id, online: false, reason: 'lost', sent_at: startedAt })), qos: 1, retain: true },
  });
}

let queue: SimAgent[] = [];
let ratePerSec = 250;
let target: { host: string; port: number } | undefined;
let credit = 0;
setInterval(() => {
  if (!target || queue.length === 0) return void (credit = 0);
  credit += ratePerSec / 20;
  const n = Math.floor(credit);
  credit -= n;
  for (const a of queue.splice(0, n)) startAgent(target.host, target.port, a, 0);
}, 50);

setInterval(() => {
  const cpu = process.cpuUsage();
  process.send?.({ type: 'progress', ...counters, queued: queue.length, cpu_secs: (cpu.user + cpu.system) / 1e6, connect_ms: connectSamples });
  connectSamples = [];
}, 500);

process.on('message', (m: { type: 'add'; url: string; rate: number; agents: SimAgent[] } | { type: 'stop' }) => {
  if (m.type === 'add') {
    const u = new URL(m.url);
    target = { host: u.hostname, port: Number(u.port) };
    ratePerSec = m.rate;
    queue = queue.concat(m.agents);
  } else {
    stopping = true;
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
