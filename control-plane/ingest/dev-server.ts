// A tiny standalone gRPC ingest runner for the agent's uplink tests (and manual trials): a SQLite
// MessageStore in --data-dir, one agent, the IngestServer on 127.0.0.1:--port (0: any). It prints
// one JSON line {"port","agentId","secret"} on stdout once listening, and stops on SIGTERM/SIGINT.
// The agent's credentials are kept in DATA_DIR/dev-agent.json (0600) so a restart on the same data
// directory serves the same agent. Not the product's entry point: that is `ferry-control-plane serve`.
//
//   node dist/control-plane/ingest/dev-server.js --data-dir DIR [--port N] [--max-in-flight N]
//        [--max-batch-messages N] [--keepalive-time-ms N]

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../log.js';
import { SqliteMessageStore } from '../store/index.js';
import { IngestServer } from './server.js';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    port: { type: 'string', default: '0' },
    'max-in-flight': { type: 'string' },
    'max-batch-messages': { type: 'string' },
    'keepalive-time-ms': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const dataDir = values['data-dir'];
if (!dataDir) {
  process.stderr.write('dev-server needs --data-dir DIR\n');
  process.exit(2);
}

const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
// Logs go to stderr: stdout carries only the one JSON line the parent reads.
const log = createLogger(values['log-level'] as 'warn', process.stderr);
const store = await SqliteMessageStore.open({ dataDir });
const agentFile = join(dataDir, 'dev-agent.json');
let agent: { id: string; secret: string };
if (existsSync(agentFile)) {
  agent = JSON.parse(readFileSync(agentFile, 'utf8')) as { id: string; secret: string };
} else {
  agent = await store.createAgent({ name: 'dev-agent', policyId: 'default' });
  writeFileSync(agentFile, JSON.stringify(agent), { mode: 0o600 });
}

const limits: Record<string, number> = {};
const inFlight = num(values['max-in-flight']);
const batchMessages = num(values['max-batch-messages']);
if (inFlight !== undefined) limits.maxInFlightBatches = inFlight;
if (batchMessages !== undefined) limits.maxBatchMessages = batchMessages;
const keepaliveTimeMs = num(values['keepalive-time-ms']);
const server = new IngestServer(
  { listen: `127.0.0.1:${values.port}`, limits, ...(keepaliveTimeMs !== undefined ? { keepaliveTimeMs } : {}) },
  { store, log },
);
await server.start();
process.stdout.write(JSON.stringify({ port: server.address()!.port, agentId: agent.id, secret: agent.secret }) + '\n');

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  server
    .stop(Date.now() + 2000)
    .then(() => store.close())
    .then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`dev-server stop failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
