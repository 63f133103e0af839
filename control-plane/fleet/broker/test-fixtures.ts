// Test fixtures (not used by the product): the two brokers a fleet test can run against, behind one
// fixture: the control plane's embedded aedes broker, and a real Mosquitto process enforcing the
// files the control plane writes. Each has a real SQLite store with really enrolled agents and a
// real FleetBus whose events are recorded.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createFleetBus, type FleetBus, type FleetBusEvents } from '../index.js';
import { createLogger, type Logger } from '../../log.js';
import { SqliteMessageStore } from '../../store/index.js';
import { connectClient } from '../../../test/helpers/mqtt-clients.js';
import { MosquittoFiles } from './mosquitto-files.js';
import type { CommandResultMessage, StatusMessage, TelemetryMessage } from '../../../proto/fleet/index.js';

export interface RecordedEvents extends FleetBusEvents {
  readonly statuses: { agentId: string; status: StatusMessage }[];
  readonly telemetries: { agentId: string; telemetry: TelemetryMessage }[];
  readonly results: { agentId: string; result: CommandResultMessage }[];
}

export function recordEvents(): RecordedEvents {
  const statuses: RecordedEvents['statuses'] = [];
  const telemetries: RecordedEvents['telemetries'] = [];
  const results: RecordedEvents['results'] = [];
  return {
    statuses,
    telemetries,
    results,
    status: (agentId, status) => statuses.push({ agentId, status }),
    telemetry: (agentId, telemetry) => telemetries.push({ agentId, telemetry }),
    commandResult: (agentId, result) => results.push({ agentId, result }),
  };
}

/** A logger whose lines the test can read (to prove refusals are logged and secrets are not). */
export function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

export interface EnrolledAgent {
  readonly id: string;
  readonly secret: string;
}

export interface BrokerFixture {
  readonly kind: 'embedded' | 'mosquitto';
  /** Where agents connect. */
  readonly url: string;
  readonly bus: FleetBus;
  readonly events: RecordedEvents;
  readonly logLines: string[];
  readonly store: SqliteMessageStore;
  enroll(): Promise<EnrolledAgent>;
  /** Revokes in the store and tells the bus (as the revoke route does). */
  revoke(agentId: string): Promise<void>;
  close(): Promise<void>;
}

export async function startEmbeddedFixture(options: { connectTimeoutSecs?: number; maxPacketBytes?: number } = {}): Promise<BrokerFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-'));
  const store = await SqliteMessageStore.open({ dataDir: join(dir, 'cp') });
  const { log, lines } = capturingLogger();
  const bus = createFleetBus({ listen: '127.0.0.1:0', connect_timeout_secs: options.connectTimeoutSecs, max_packet_bytes: options.maxPacketBytes }, { store, log });
  const events = recordEvents();
  await bus.start(events);
  return {
    kind: 'embedded',
    url: bus.agentUrl,
    bus,
    events,
    logLines: lines,
    store,
    async enroll() {
      const a = await store.createAgent({ name: 'test', policyId: 'default' });
      return { id: a.id, secret: a.secret };
    },
    async revoke(agentId) {
      await store.revokeAgent(agentId);
      await bus.forgetAgent(agentId);
    },
    async close() {
      await bus.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A port free right now on loopback (the broker binds it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function mosquittoAvailable(): boolean {
  return spawnSync(MOSQUITTO, ['-h'], { stdio: 'ignore' }).error === undefined;
}

const MOSQUITTO = process.env.FERRY_TEST_MOSQUITTO ?? (existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto');

/**
 * A Mosquitto process of our own on a free loopback port, configured like packaging/mosquitto/
 * (no anonymous clients, the control plane's password and ACL files, username as client id),
 * with the control plane connected to it as an external broker.
 */
export async function startMosquittoFixture(): Promise<BrokerFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mosquitto-'));
  const store = await SqliteMessageStore.open({ dataDir: join(dir, 'cp') });
  const { log, lines } = capturingLogger();
  const cpPasswordFile = join(dir, 'cp-mqtt-password');
  writeFileSync(cpPasswordFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  const passwordFile = join(dir, 'mosquitto.passwd');
  const aclFile = join(dir, 'mosquitto.acl');
  const pidFile = join(dir, 'mosquitto.pid');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwordFile}`,
      `acl_file ${aclFile}`,
      'use_username_as_clientid true',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      // Running as root, Mosquitto would switch to the mosquitto user, which cannot read our 0600 files.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n'),
  );
  const config = { url: `mqtt://127.0.0.1:${port}`, username: 'ferry-control-plane', password_file: cpPasswordFile, mosquitto: { password_file: passwordFile, acl_file: aclFile, pid_file: pidFile } };
  // The files exist before Mosquitto starts (it refuses to start without its password file).
  await new MosquittoFiles({ passwordFile, aclFile, pidFile: undefined, controlPlaneUser: config.username, controlPlanePasswordFile: cpPasswordFile }, { store, log }).sync('fixture');
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const brokerLog: string[] = [];
  child.stderr.on('data', (d: Buffer) => brokerLog.push(d.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mosquitto did not start:\n${brokerLog.join('')}`)), 15_000);
    const check = (): void => {
      if (brokerLog.join('').includes(' running')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mosquitto exited with ${code}:\n${brokerLog.join('')}`));
    });
  });
  writeFileSync(pidFile, `${child.pid}\n`);
  const bus = createFleetBus(config, { store, log });
  const events = recordEvents();
  await bus.start(events);
  if (bus.health?.().state !== 'connected') throw new Error(`the control plane did not connect to mosquitto: ${bus.health?.().message}\n${brokerLog.join('')}`);
  const url = `mqtt://127.0.0.1:${port}`;
  const secrets = new Map<string, string>();
  /** Reloads are asynchronous (SIGHUP): wait until the broker answers this agent's CONNECT as expected. */
  const waitFor = async (agent: EnrolledAgent, accepted: boolean): Promise<void> => {
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      const r = await connectClient(url, { clientId: agent.id, username: agent.id, password: agent.secret });
      if (r.ok) await r.client.end();
      if (r.ok === accepted) return;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`mosquitto did not ${accepted ? 'accept' : 'refuse'} ${agent.id} after reloading its files`);
  };
  return {
    kind: 'mosquitto',
    url,
    bus,
    events,
    logLines: lines,
    store,
    async enroll() {
      const a = await store.createAgent({ name: 'test', policyId: 'default' });
      await bus.agentEnrolled?.(a.id);
      const agent = { id: a.id, secret: a.secret };
      secrets.set(a.id, a.secret);
      await waitFor(agent, true);
      return agent;
    },
    async revoke(agentId) {
      const secret = secrets.get(agentId);
      await store.revokeAgent(agentId);
      await bus.forgetAgent(agentId);
      if (secret !== undefined) await waitFor({ id: agentId, secret }, false);
    },
    async close() {
      await bus.close();
      child.kill('SIGTERM');
      await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
