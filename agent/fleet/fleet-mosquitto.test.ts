// The fleet client against a real Mosquitto 2 process (MQTT v5): the agent speaks v5 there, and its
// persistent session (clean start off, session expiry) delivers a command published while the
// agent was stopped once it comes back. Skipped where no mosquitto binary is installed.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { command, startController, type Controller } from '../../test/helpers/fleet-broker.js';
import { waitFor } from '../../test/helpers/mllp-harness.js';
import { Agent } from '../agent.js';
import { validateConfig } from '../config/index.js';
import { writeCredentials } from '../enroll/index.js';
import { createLogger } from '../log.js';

const MOSQUITTO = '/usr/sbin/mosquitto';
const AGENT_ID = 'agt_mosq_test';

let dir: string;
let mosquitto: ChildProcess | undefined;
let cp: Controller | undefined;
let agent: Agent | undefined;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function startAgent(): Promise<Agent> {
  const r = validateConfig({
    data_dir: join(dir, 'data'),
    admin: { listen: '127.0.0.1:0' },
    uplink: { enabled: false },
    sources: [{ id: 'm', type: 'mllp', listen: '127.0.0.1:0' }],
    fleet: { heartbeat_secs: 1, keepalive_secs: 2, reconnect_delay_secs: 0.2 },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  agent = await Agent.start(r.config, createLogger('silent'));
  return agent;
}

describe.skipIf(!existsSync(MOSQUITTO))('fleet client on Mosquitto (MQTT v5)', () => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-fleet-mosq-'));
    const port = await freePort();
    writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    mosquitto = spawn(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
    const url = `mqtt://127.0.0.1:${port}`;
    await waitFor(async () => {
      try {
        cp = await startController(url, AGENT_ID);
        return true;
      } catch {
        return false;
      }
    }, 15_000, 'mosquitto accepting connections');
    mkdirSync(join(dir, 'data'), { recursive: true, mode: 0o700 });
    writeCredentials(join(dir, 'data'), { agent_id: AGENT_ID, secret: 's3cret-mosq', control_plane_url: 'http://127.0.0.1:1', grpc_target: '127.0.0.1:1', enrolled_at: new Date().toISOString(), mqtt_url: url });
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await cp?.close();
    mosquitto?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects with MQTT v5 and receives a command sent while it was stopped', async () => {
    await startAgent();
    await cp!.waitForStatus((s) => s.online, 'online');
    expect(agent!.fleetState()).toMatchObject({ state: 'connected', protocol: 'mqtt5' });
    await agent!.stop();
    agent = undefined;
    await cp!.waitForStatus((s) => !s.online && s.reason === 'shutdown', 'offline on stop');

    await cp!.publishCommand(command('queued-1', 'ping'));
    await startAgent();
    expect(await cp!.waitForResult('queued-1')).toMatchObject({ status: 'succeeded', result: { pong_at: expect.any(String) } });
  });
});
