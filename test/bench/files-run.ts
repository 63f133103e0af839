// Runs only the file benchmarks (files.ts: import and file_drop, each beside its baseline):
// `npm run build && node dist/test/bench/files-run.js`. BENCH_DROP=0 runs only the import;
// BENCH_IMPORT_RUNS=3 repeats it (each run beside its own baseline). `npm run bench` runs it with the rest.

import { rmSync } from 'node:fs';
import { runFilesBench } from './files.js';
import { killAllChildren, tempBase } from './servers.js';

const base = tempBase();
const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);
process.on('exit', killAllChildren);
try {
  const result = await runFilesBench(base, log);
  process.stdout.write(`${result.markdown}\n`);
  if (!result.ok) process.exitCode = 1;
} finally {
  killAllChildren();
  if (process.env.BENCH_KEEP !== '1') rmSync(base, { recursive: true, force: true });
}
