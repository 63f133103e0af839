// File benchmarks for `npm run bench` (BENCH_FILES=0 skips them; `node dist/test/bench/files-run.js`
// runs only these, BENCH_DROP=0 only the import):
//   import     `ferry-agent import` of BENCH_IMPORT_FILES files x BENCH_IMPORT_PER_FILE messages
//              (default 10,000 x 10 = 100,000 messages): msgs/s, MB/s, peak RSS
//   file_drop  a running agent taking BENCH_DROP_FILES small files (default 10,000, one message
//              each) renamed into its watched folder: files/s, peak RSS
// each beside a baseline measured in the same run on the same disk: plain multi-row INSERTs of the
// same payloads into a SQLite WAL database with synchronous=FULL, no encryption, no parsing, in
// transactions of up to 4,096 rows (the buffer's largest commit) and statements of 128 rows.
// Target: import >= 0.5 x its baseline.

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { close, exec, openDatabase, prepare, run, runStatement, finalize, type SqlValue } from '../../agent/buffer/sqlite.js';
import { AGENT_MAIN, startAgent } from '../helpers/agent-process.js';
import { writeHl7Tree } from '../helpers/hl7-tree.js';
import { realisticMessage } from '../helpers/messages.js';
import { clockTicksPerSecond, probeFsync, sampleRss } from './procfs.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

const IMPORT_FILES = envInt('BENCH_IMPORT_FILES', 10_000);
const IMPORT_PER_FILE = envInt('BENCH_IMPORT_PER_FILE', 10);
const DROP_FILES = envInt('BENCH_DROP_FILES', 10_000);
const RUN_DROP = process.env.BENCH_DROP !== '0';
const IMPORT_RUNS = envInt('BENCH_IMPORT_RUNS', 1);
const BASELINE_TX_ROWS = 4096;
const BASELINE_STMT_ROWS = 128;

interface Rate {
  readonly seconds: number;
  /** CPU seconds of this process (every thread, SQLite's included) during the inserts. */
  readonly cpuSeconds: number;
  readonly messages: number;
  readonly bytes: number;
}

export interface FilesBenchResult {
  readonly markdown: string;
  /** false when a run did not take every file (a correctness failure, not a speed one). */
  readonly ok: boolean;
  /** Import msgs/s over the baseline's, whole command (the median run). */
  readonly importRatio?: number;
}

/** Plain multi-row inserts of the payloads: the disk's and SQLite's own ceiling for this shape. */
async function baselineInserts(dir: string, payloads: readonly Buffer[]): Promise<Rate> {
  const db = await openDatabase(join(mkdtempSync(join(dir, 'baseline-')), 'plain.db'));
  await exec(db, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE m (seq INTEGER PRIMARY KEY, source_id TEXT NOT NULL, received_at INTEGER NOT NULL, payload BLOB NOT NULL);');
  const stmts = new Map<number, Awaited<ReturnType<typeof prepare>>>();
  const stmt = async (rows: number): Promise<Awaited<ReturnType<typeof prepare>>> => {
    let s = stmts.get(rows);
    if (!s) {
      s = await prepare(db, `INSERT INTO m (seq, source_id, received_at, payload) VALUES ${new Array(rows).fill('(?,?,?,?)').join(',')}`);
      stmts.set(rows, s);
    }
    return s;
  };
  let bytes = 0;
  for (const p of payloads) bytes += p.length;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  let seq = 1;
  for (let tx = 0; tx < payloads.length; tx += BASELINE_TX_ROWS) {
    const end = Math.min(payloads.length, tx + BASELINE_TX_ROWS);
    await run(db, 'BEGIN IMMEDIATE');
    for (let at = tx; at < end; at += BASELINE_STMT_ROWS) {
      const n = Math.min(BASELINE_STMT_ROWS, end - at);
      const params: SqlValue[] = [];
      for (let i = at; i < at + n; i++) params.push(seq++, 'bench', Date.now(), payloads[i]!);
      await runStatement(await stmt(n), params);
    }
    await run(db, 'COMMIT');
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  for (const s of stmts.values()) await finalize(s);
  await close(db);
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, messages: payloads.length, bytes };
}

/**
 * CPU seconds (user + system, all threads) of this process's children that have exited and been
 * reaped (cutime + cstime in /proc/self/stat): the delta across one child's run is exactly its CPU.
 */
function reapedChildrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3; cutime is field 16, cstime field 17.
  return (Number(rest[13]) + Number(rest[14])) / clockTicksPerSecond();
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

interface ImportRun {
  readonly ok: boolean;
  readonly stdout: string;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly peakRss: number;
  readonly base: Rate;
}

/** One `ferry-agent import` of the tree into a fresh data dir, as a user would run it. */
async function importOnce(tree: string, dataDir: string, log: (line: string) => void): Promise<Omit<ImportRun, 'base'>> {
  const cpuBefore = reapedChildrenCpuSeconds();
  const started = performance.now();
  const child = execFile(process.execPath, [AGENT_MAIN, 'import', tree, '--source', 'bench-import', '--data-dir', dataDir], { maxBuffer: 16 * 1024 * 1024 });
  const rss = sampleRss(child.pid!);
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`import exited ${code}: ${out}`))));
  });
  const seconds = (performance.now() - started) / 1000;
  const cpuSeconds = reapedChildrenCpuSeconds() - cpuBefore;
  rss.stop();
  const ok = stdout.includes(`imported ${IMPORT_FILES} files (${IMPORT_FILES * IMPORT_PER_FILE} messages)`);
  if (!ok) log(`files: import did not take every file: ${stdout}`);
  return { ok, stdout, seconds, cpuSeconds, peakRss: rss.peak() };
}

interface DropRun {
  readonly ok: boolean;
  readonly seconds: number;
  readonly bytes: number;
  readonly peakRss: number;
  readonly base: Rate;
}

/** A running agent taking DROP_FILES one-message files renamed into its folder, until all are archived. */
async function dropBench(dir: string, log: (line: string) => void): Promise<DropRun> {
  log(`files: file_drop of ${DROP_FILES} files`);
  const staging = join(dir, 'staging');
  const inbox = join(dir, 'inbox');
  const archive = join(dir, 'archive');
  mkdirSync(staging, { recursive: true });
  mkdirSync(inbox, { recursive: true });
  const dropPayloads: Buffer[] = [];
  const old = new Date(Date.now() - 60_000);
  for (let n = 0; n < DROP_FILES; n++) {
    const p = realisticMessage('BDROP-', n);
    dropPayloads.push(p);
    const f = join(staging, `m${String(n).padStart(6, '0')}.hl7`);
    writeFileSync(f, p);
    utimesSync(f, old, old); // complete long ago: taken as soon as it is renamed in
  }
  const agent = await startAgent({
    dir: join(dir, 'drop-agent'),
    sources: [{ id: 'bench-drop', type: 'file_drop', path: inbox, archive_dir: archive, error_dir: join(dir, 'error'), stable_secs: 1 }],
    config: { log_level: 'info', uplink: { enabled: false } },
  });
  const dropRss = sampleRss(agent.child.pid!);
  const dropStarted = performance.now();
  for (const name of readdirSync(staging)) renameSync(join(staging, name), join(inbox, name));
  const deadline = Date.now() + 600_000;
  let archived = 0;
  while ((archived = readdirSync(archive).length) < DROP_FILES && Date.now() < deadline) await sleep(50);
  const dropSeconds = (performance.now() - dropStarted) / 1000;
  dropRss.stop();
  await agent.stop();
  const ok = archived >= DROP_FILES;
  if (!ok) log(`files: file_drop archived only ${archived} of ${DROP_FILES}`);
  log('files: file_drop baseline');
  const dropBase = await baselineInserts(dir, dropPayloads);
  const dropBytes = dropPayloads.reduce((s, p) => s + p.length, 0);
  return { ok, seconds: dropSeconds, bytes: dropBytes, peakRss: dropRss.peak(), base: dropBase };
}

export async function runFilesBench(baseDir: string, log: (line: string) => void): Promise<FilesBenchResult> {
  const dir = mkdtempSync(join(baseDir, 'files-'));
  const fsync = probeFsync(dir, 1, true);
  let ok = true;

  // ---- import ----
  log(`files: writing ${IMPORT_FILES} files x ${IMPORT_PER_FILE} messages`);
  const tree = join(dir, 'tree');
  const files = writeHl7Tree(tree, { files: IMPORT_FILES, perFile: IMPORT_PER_FILE, prefix: 'BIMP-', folders: 20 });
  const importPayloads: Buffer[] = [];
  for (let n = 0; n < IMPORT_FILES * IMPORT_PER_FILE; n++) importPayloads.push(realisticMessage('BIMP-', n));
  const importBytes = files.reduce((s, f) => s + f.bytes.length, 0);
  const runs: ImportRun[] = [];
  for (let r = 0; r < IMPORT_RUNS; r++) {
    log(`files: import, run ${r + 1} of ${IMPORT_RUNS}`);
    const run = await importOnce(tree, join(dir, `import-data-${r}`), log);
    if (!run.ok) ok = false;
    log('files: import baseline');
    runs.push({ ...run, base: await baselineInserts(dir, importPayloads) });
  }

  const drop = RUN_DROP ? await dropBench(dir, log) : undefined;
  if (drop && !drop.ok) ok = false;

  const total = IMPORT_FILES * IMPORT_PER_FILE;
  const mb = (bytes: number, s: number): string => fmt(bytes / 1e6 / s, 1);
  const ratios = runs.map((r) => total / r.seconds / (r.base.messages / r.base.seconds));
  const importRatio = [...ratios].sort((a, b) => a - b)[Math.floor((ratios.length - 1) / 2)]!;
  const importRows = runs.flatMap((r, i) => {
    const msgs = total / r.seconds;
    const baseMsgs = r.base.messages / r.base.seconds;
    // The command's own figure: from the walk to the last commit (without process start and the
    // final WAL checkpoint at close, which the baseline does not time either).
    const phaseMsgs = Number(/, (\d+) msgs\/s/.exec(r.stdout)?.[1] ?? NaN);
    const label = runs.length > 1 ? ` (run ${i + 1})` : '';
    return [
      `| import${label}: ${fmt(total)} messages in ${fmt(IMPORT_FILES)} files (whole command: start, walk, read, parse, seal, commit) | ${fmt(msgs)} msgs/s, ${mb(importBytes, r.seconds)} MB/s (${fmt(r.seconds, 1)} s) | ${fmt(baseMsgs)} msgs/s, ${mb(r.base.bytes, r.base.seconds)} MB/s | ${fmt(ratios[i]!, 2)}× | ≥ 0.5× ${ratios[i]! >= 0.5 ? 'PASS' : 'FAIL'} | ${fmt(r.cpuSeconds, 2)} s / ${fmt(r.base.cpuSeconds, 2)} s | ${fmt(r.peakRss / 1024 / 1024)} MiB |`,
      `| import${label}, as the command reports it (walk to last commit) | ${fmt(phaseMsgs)} msgs/s | ${fmt(baseMsgs)} msgs/s | ${fmt(phaseMsgs / baseMsgs, 2)}× | ≥ 0.5× ${phaseMsgs / baseMsgs >= 0.5 ? 'PASS' : 'FAIL'} | | |`,
    ];
  });
  const markdown = [
    '### File drops and import',
    '',
    `Same run, same disk (fsync: ${fmt(fsync.perSecond)}/s, ${fsync.how}). Baseline: plain multi-row INSERTs of the same payloads, SQLite WAL, synchronous=FULL, no encryption, no parsing, ${BASELINE_TX_ROWS}-row transactions of ${BASELINE_STMT_ROWS}-row statements.`,
    '',
    '| run | Ferry | baseline | ratio | target | CPU (Ferry, all threads / baseline) | Ferry peak RSS |',
    '|---|---|---|---|---|---|---|',
    ...importRows,
    drop
      ? `| file_drop: ${fmt(DROP_FILES)} one-message files renamed into the folder, until all archived | ${fmt(DROP_FILES / drop.seconds)} files/s, ${mb(drop.bytes, drop.seconds)} MB/s (${fmt(drop.seconds, 1)} s) | ${fmt(drop.base.messages / drop.base.seconds)} rows/s | ${fmt(DROP_FILES / drop.seconds / (drop.base.messages / drop.base.seconds), 2)}× | – | | ${fmt(drop.peakRss / 1024 / 1024)} MiB |`
      : '| file_drop | not run (BENCH_DROP=0) | | | | | |',
    '',
    `The file_drop figure includes, per file, a read, a hash lookup, the commit, a hard link into archive_dir, an unlink and two directory fsyncs; the baseline does none of that.${ok ? '' : ' **A run did not take every file: see the log.**'}`,
  ].join('\n');
  return { markdown, ok, importRatio };
}
