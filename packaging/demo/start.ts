// `npm start`: Ferry's main job on embedded defaults, from nothing, in ./.ferry-demo.
//
// A control plane (SQLite store, HTTP API, gRPC ingest, embedded MQTT broker) and an agent enrolled
// with it, listening for MLLP on 2575 (the IANA port, as documented). Other ports use their defaults
// (HTTP 8080, gRPC 50051, MQTT 1883, agent admin 9575) or, when one is taken on this machine (1883
// often is: Mosquitto), a free one, which it prints. The agent learns the MQTT port at enrollment.
// Ctrl-C stops both cleanly: the agent drains first, then the control plane.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..', '..');
const demoDir = join(root, '.ferry-demo');
const agentMain = join(root, 'dist', 'agent', 'main.js');
const controlPlaneMain = join(root, 'dist', 'control-plane', 'main.js');
const MLLP_PORT = 2575;

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => done(true)));
  });
}

async function choosePort(preferred: number, host: string, chosen: Map<string, string>, name: string): Promise<number> {
  if (await portFree(preferred, host)) return preferred;
  const port = await new Promise<number>((done) => {
    const s = createServer();
    s.listen({ port: 0, host }, () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });
  chosen.set(name, `${preferred} is taken on this machine, so the demo chose ${port}`);
  return port;
}

/** Runs a child with its output appended to a log file; resolves when a JSON log line matches. */
function startLogged(args: string[], logPath: string, ready: (entry: Record<string, unknown>) => boolean): { child: ChildProcess; ready: Promise<Record<string, unknown>> } {
  const log = createWriteStream(logPath, { flags: 'a' });
  // Own process group: Ctrl-C reaches only this script, which then stops each child once, in order.
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const readyPromise = new Promise<Record<string, unknown>>((resolveReady, reject) => {
    let rest = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (ready(entry)) resolveReady(entry);
        } catch {
          // not a JSON log line
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with code ${code} before it was ready; see ${relative(process.cwd(), logPath)}`)));
  });
  return { child, ready: readyPromise };
}

function run(args: string[], stdin: string): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => done({ code: code ?? 1, output }));
    child.stdin.end(stdin);
  });
}

function stopChild(child: ChildProcess | undefined): Promise<number | null> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
  return new Promise((done) => {
    child.once('exit', (code) => done(code));
    child.kill('SIGTERM');
  });
}

async function main(): Promise<void> {
  if (!(await portFree(MLLP_PORT, '0.0.0.0'))) {
    process.stderr.write(`Port ${MLLP_PORT} (MLLP) is in use on this machine. Stop what holds it (is another demo running?) and run npm start again.\n`);
    process.exitCode = 1;
    return;
  }
  const notes = new Map<string, string>();
  const httpPort = await choosePort(8080, '0.0.0.0', notes, 'control-plane HTTP');
  const grpcPort = await choosePort(50051, '0.0.0.0', notes, 'control-plane gRPC');
  // The agent keeps the MQTT URL from its enrollment, so a later run reuses the port the first one chose.
  const mqttPortFile = join(demoDir, 'mqtt-port');
  const rememberedMqtt = existsSync(mqttPortFile) ? Number(readFileSync(mqttPortFile, 'utf8').trim()) : undefined;
  const mqttPort = await choosePort(rememberedMqtt !== undefined && rememberedMqtt > 0 ? rememberedMqtt : 1883, '0.0.0.0', notes, 'control-plane MQTT (embedded broker)');
  const adminPort = await choosePort(9575, '127.0.0.1', notes, 'agent admin');
  mkdirSync(demoDir, { recursive: true, mode: 0o700 });
  writeFileSync(mqttPortFile, `${mqttPort}\n`);
  const cpDir = join(demoDir, 'control-plane');
  const agentDir = join(demoDir, 'agent');
  const agentConfig = join(demoDir, 'agent.yaml');
  writeFileSync(
    agentConfig,
    [
      '# Written by npm start (packaging/demo/start.ts); rewritten on the next start.',
      `data_dir: ${agentDir}`,
      'admin:',
      `  listen: 127.0.0.1:${adminPort}`,
      'buffer:',
      '  max_bytes: 1GiB',
      'sources:',
      '  - id: demo-mllp',
      '    type: mllp',
      `    listen: 0.0.0.0:${MLLP_PORT}`,
      '',
    ].join('\n'),
  );

  let controlPlane: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nStopping: the agent drains first, then the control plane...\n');
    const agentCode = await stopChild(agent);
    const cpCode = await stopChild(controlPlane);
    process.stdout.write(agentCode === 0 && cpCode === 0 ? 'Stopped cleanly.\n' : `Stopped (agent exit ${agentCode}, control plane exit ${cpCode}); see the logs in .ferry-demo/\n`);
  };
  process.once('SIGINT', () => void stopAll());
  process.once('SIGTERM', () => void stopAll());
  process.once('exit', () => {
    agent?.kill('SIGTERM');
    controlPlane?.kill('SIGTERM');
  });

  try {
    const cp = startLogged(
      [controlPlaneMain, 'serve', '--data-dir', cpDir, '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--mqtt-port', String(mqttPort)],
      join(demoDir, 'control-plane.log'),
      (e) => e.msg === 'control plane started',
    );
    controlPlane = cp.child;
    await cp.ready;
    const adminToken = readFileSync(join(cpDir, 'admin-token'), 'utf8').trim();
    const apiUrl = `http://127.0.0.1:${httpPort}`;
    if (!existsSync(join(agentDir, 'credentials.json'))) {
      const res = await fetch(`${apiUrl}/api/v1/enrollment-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_in_secs: 600 }),
      });
      if (!res.ok) throw new Error(`creating an enrollment token failed: HTTP ${res.status}`);
      const { token } = (await res.json()) as { token: string };
      // The token goes to the agent on stdin, never on a command line.
      const enrolled = await run([agentMain, 'enroll', '--control-plane', apiUrl, '--token-file', '-', '--config', agentConfig, '--name', 'demo-agent'], token);
      if (enrolled.code !== 0) throw new Error(`enrolling the agent failed:\n${enrolled.output}`);
    }
    const ag = startLogged([agentMain, 'run', '--config', agentConfig], join(demoDir, 'agent.log'), (e) => e.msg === 'agent started');
    agent = ag.child;
    await ag.ready;
    printBanner({ apiUrl, adminPort, mqttPort, notes, cpDir });
    const exited = await Promise.race([
      new Promise<string>((r) => agent!.once('exit', () => r('agent'))),
      new Promise<string>((r) => controlPlane!.once('exit', () => r('control plane'))),
    ]);
    if (!stopping) {
      process.stderr.write(`The ${exited} exited unexpectedly; see .ferry-demo/*.log\n`);
      await stopAll();
      process.exitCode = 1;
    }
  } catch (err) {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll();
    process.exitCode = 1;
  }
}

function printBanner(o: { apiUrl: string; adminPort: number; mqttPort: number; notes: Map<string, string>; cpDir: string }): void {
  const rel = (p: string): string => relative(process.cwd(), p) || '.';
  const tokenFile = rel(join(o.cpDir, 'admin-token'));
  const lines = [
    '',
    'Ferry demo is running (data in .ferry-demo/):',
    `  control plane: HTTP API ${o.apiUrl}  (admin API token in ${tokenFile}), gRPC ingest for agents, MQTT fleet bus on port ${o.mqttPort}`,
    `  agent: enrolled, MLLP on 0.0.0.0:${MLLP_PORT}, admin HTTP http://127.0.0.1:${o.adminPort}`,
  ];
  for (const [name, note] of o.notes) lines.push(`  note: ${name} port ${note}`);
  lines.push(
    '',
    'Try it (in another terminal):',
    `  npx ferry-agent send --to 127.0.0.1:${MLLP_PORT} ../shared/hl7-samples/adt-a01_v2.4_hapi-docs.hl7`,
    `  curl -s -H "Authorization: Bearer $(cat ${tokenFile})" ${o.apiUrl}/api/v1/messages`,
    `  curl -s -H "Authorization: Bearer $(cat ${tokenFile})" ${o.apiUrl}/api/v1/agents`,
    `  npx ferry-agent status --admin http://127.0.0.1:${o.adminPort}`,
    '',
    'Ctrl-C stops both cleanly. Logs: .ferry-demo/agent.log, .ferry-demo/control-plane.log',
    '',
  );
  process.stdout.write(lines.join('\n'));
}

void main();
