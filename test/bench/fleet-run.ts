// Runs only the fleet scale benchmark (fleet.ts) against the built control plane:
// `npm run build && node dist/test/bench/fleet-run.js`. `npm run bench` runs it with the rest.

import { rmSync } from 'node:fs';
import { runFleetBench } from './fleet.js';
import { killAllChildren, tempBase } from './servers.js';

const base = tempBase();
const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);
process.on('exit', killAllChildren);
try {
  const result = await runFleetBench({ baseDir: base, log });
  process.stdout.write(`${result.text}\n`);
} finally {
  killAllChildren();
  if (process.env.BENCH_KEEP !== '1') rmSync(base, { recursive: true, force: true });
}
