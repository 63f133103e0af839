// `npm start`: Ferry's main job on embedded defaults, from nothing, in ./.ferry-demo.
//
// Until the control plane lands (it is a placeholder for now) this runs the agent: an MLLP listener
// on 2575 (the IANA port, as documented), admin HTTP on 9575 or, when that is taken on this machine,
// a free port, which it prints. Ctrl-C stops it cleanly (SIGTERM to the agent, which drains).

import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..', '..');
const demoDir = join(root, '.ferry-demo');
const agentMain = join(root, 'dist', 'agent', 'main.js');
const MLLP_PORT = 2575;

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => done(true)));
  });
}

async function freePort(preferred: number, host: string): Promise<number> {
  if (await portFree(preferred, host)) return preferred;
  return new Promise((done) => {
    const s = createServer();
    s.listen({ port: 0, host }, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

async function main(): Promise<void> {
  if (!(await portFree(MLLP_PORT, '0.0.0.0'))) {
    process.stderr.write(`Port ${MLLP_PORT} (MLLP) is in use on this machine. Stop what holds it (is another demo running?) and run npm start again.\n`);
    process.exitCode = 1;
    return;
  }
  const adminPort = await freePort(9575, '127.0.0.1');
  mkdirSync(demoDir, { recursive: true, mode: 0o700 });
  const configPath = join(demoDir, 'agent.yaml');
  writeFileSync(
    configPath,
    [
      '# Written by npm start (packaging/demo/start.ts); edit freely, it is rewritten on the next start.',
      `data_dir: ${join(demoDir, 'agent')}`,
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
  const logPath = join(demoDir, 'agent.log');
  const log = createWriteStream(logPath, { flags: 'a' });
  // Own process group: Ctrl-C reaches only this script, which then asks the agent once to drain
  // (a second signal would make the agent exit without waiting).
  const child = spawn(process.execPath, [agentMain, 'run', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  process.once('exit', () => child.kill('SIGTERM'));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let started = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (!started && chunk.toString().includes('"agent started"')) {
      started = true;
      printBanner(adminPort, configPath, logPath);
    }
  });
  const stop = (): void => {
    process.stdout.write('\nStopping the agent (it answers what it has read, then closes the buffer)...\n');
    child.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await new Promise<number>((done) => child.once('exit', (c) => done(c ?? 1)));
  log.end();
  if (!started) process.stderr.write(`The agent did not start; see ${relative(process.cwd(), logPath)}\n`);
  else process.stdout.write(code === 0 ? 'Agent stopped cleanly.\n' : `Agent exited with code ${code}; see ${logPath}\n`);
  process.exitCode = code;
}

function printBanner(adminPort: number, configPath: string, logPath: string): void {
  const rel = (p: string): string => relative(process.cwd(), p) || '.';
  const admin = `http://127.0.0.1:${adminPort}`;
  const note = adminPort === 9575 ? '' : ` (9575 is taken on this machine, so the demo chose ${adminPort})`;
  process.stdout.write(
    [
      '',
      'Ferry demo is running.',
      `  agent: MLLP on 0.0.0.0:${MLLP_PORT}, admin HTTP on ${admin}${note}`,
      `  config: ${rel(configPath)}   logs: ${rel(logPath)}   buffer: ${rel(join(demoDir, 'agent'))}`,
      '  control plane: not built yet (next milestone); the agent buffers every message encrypted until it exists.',
      '',
      'Try it (in another terminal):',
      `  npx ferry-agent send --to 127.0.0.1:${MLLP_PORT} ../shared/hl7-samples/adt-a01_v2.4_hapi-docs.hl7`,
      `  npx ferry-agent status --admin ${admin}`,
      `  curl -s ${admin}/metrics | grep ferry_messages`,
      `  npx ferry-agent check --config ${rel(configPath)}`,
      '',
      'Ctrl-C stops it cleanly.',
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
