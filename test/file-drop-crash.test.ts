// SIGKILL of the agent at random points while its file_drop source takes thousands of files, then
// restarts on the same folders and data directory. At the end every message of every good file is
// in the buffer exactly once (by control id, size and sha256), every good file is in archive_dir
// under its own name (no leftovers in the inbox, no second copies), and every bad file is in
// error_dir with its reason file.
//
// Reproduce a run with FERRY_CRASH_SEED=<seed printed in the summary line>.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { all, close, openDatabase } from '../agent/buffer/sqlite.js';
import { AGENT_MAIN, startAgent, type RunningAgent } from './helpers/agent-process.js';
import { countByControlId, readBufferRows } from './helpers/buffer-db.js';
import { realisticMessage } from './helpers/messages.js';
import { prng } from './helpers/prng.js';

const WAVES = 4;
const FILES_PER_WAVE = 1500;
const KILLS = 12;
const BAD_PER_WAVE = 10;

interface GoodFile {
  readonly name: string;
  readonly messages: { id: string; size: number; sha256: string }[];
}

describe('file_drop: agent killed with SIGKILL while taking files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fd-crash-'));
  let current: RunningAgent | undefined;
  let passed = false;

  afterAll(async () => {
    if (current) await current.stop('SIGKILL');
    if (passed) rmSync(dir, { recursive: true, force: true });
    else console.log(`file_drop crash test data kept in ${dir}`);
  });

  it('stores each message of each file exactly once and leaves every file in archive or error', async () => {
    expect(existsSync(AGENT_MAIN), `${AGENT_MAIN} is missing: run "npm run build" first`).toBe(true);
    const seed = Number(process.env.FERRY_CRASH_SEED ?? randomBytes(4).readUInt32BE(0));
    const random = prng(seed);
    const prefix = `D${seed.toString(36)}-`;
    const inbox = join(dir, 'inbox');
    const archive = join(dir, 'archive');
    const errors = join(dir, 'error');
    mkdirSync(inbox, { recursive: true });
    const source = { id: 'drop', type: 'file_drop', path: inbox, archive_dir: archive, error_dir: errors, stable_secs: 0.2 };
    const good: GoodFile[] = [];
    const bad: string[] = [];
    let n = 0;
    const writeWave = (wave: number): void => {
      for (let f = 0; f < FILES_PER_WAVE; f++) {
        const count = 1 + Math.floor(random() * 3);
        const parts: Buffer[] = [];
        const messages: GoodFile['messages'] = [];
        for (let m = 0; m < count; m++) {
          const payload = realisticMessage(prefix, n);
          messages.push({ id: `${prefix}${String(n).padStart(10, '0')}`, size: payload.length, sha256: createHash('sha256').update(payload).digest('hex') });
          parts.push(payload);
          n++;
        }
        const name = `w${wave}-${String(f).padStart(5, '0')}.hl7`;
        writeFileSync(join(inbox, name), Buffer.concat(parts));
        good.push({ name, messages });
      }
      for (let b = 0; b < BAD_PER_WAVE; b++) {
        const name = `w${wave}-bad-${b}.hl7`;
        writeFileSync(join(inbox, name), randomBytes(200 + b));
        bad.push(name);
      }
    };

    let killsWhileBusy = 0;
    const agentLogs: string[][] = [];
    for (let round = 0; round < KILLS; round++) {
      if (round < WAVES) writeWave(round);
      current = await startAgent({ dir, sources: [source] });
      agentLogs.push(current.lines);
      await sleep(50 + random() * 700);
      if (readdirSync(inbox).length > 0) killsWhileBusy++;
      current.child.kill('SIGKILL');
      const exit = await current.exited;
      expect(exit.signal, `round ${round}: the agent should die of SIGKILL`).toBe('SIGKILL');
    }

    // Last start: let it finish everything, then stop cleanly.
    current = await startAgent({ dir, sources: [source] });
    agentLogs.push(current.lines);
    const deadline = Date.now() + 120_000;
    while (readdirSync(inbox).length > 0) {
      if (Date.now() > deadline) throw new Error(`inbox still holds ${readdirSync(inbox).length} files`);
      await sleep(100);
    }
    const stopped = await current.stop('SIGTERM');
    current = undefined;
    expect(stopped.code).toBe(0);

    const rows = await readBufferRows(join(dir, 'data', 'buffer.db'));
    const byId = countByControlId(rows);
    const lost: string[] = [];
    const duplicated: string[] = [];
    const wrong: string[] = [];
    for (const f of good) {
      for (const m of f.messages) {
        const found = byId.get(m.id) ?? [];
        if (found.length === 0) lost.push(`${f.name}: ${m.id}`);
        if (found.length > 1) duplicated.push(`${f.name}: ${m.id} x${found.length}`);
        for (const r of found) if (r.size !== m.size || r.sha256 !== m.sha256) wrong.push(`${m.id}: bytes differ`);
      }
    }
    const expectedMessages = good.reduce((s, f) => s + f.messages.length, 0);
    const archived = readdirSync(archive).sort();
    const errored = readdirSync(errors).sort();
    const db = await openDatabase(join(dir, 'data', 'buffer.db'), true);
    const fileRows = await all<{ n: number }>(db, "SELECT COUNT(*) AS n FROM files WHERE source_id = 'drop'");
    await close(db);
    console.log(
      `file_drop crash test (seed ${seed}): ${KILLS} kills (${killsWhileBusy} while files were waiting), ${good.length} good files holding ${expectedMessages} messages, ${bad.length} bad files; ` +
        `stored ${rows.length} rows, lost ${lost.length}, duplicated ${duplicated.length}, wrong ${wrong.length}; archived ${archived.length}, error_dir ${errored.length} entries`,
    );
    expect(lost, 'messages lost').toEqual([]);
    expect(duplicated, 'messages stored twice').toEqual([]);
    expect(wrong, 'stored bytes differ').toEqual([]);
    expect(rows.length).toBe(expectedMessages);
    expect(fileRows[0]!.n).toBe(good.length);
    // Every good file archived once under its own name; every bad file in error_dir with its reason.
    expect(archived).toEqual(good.map((f) => f.name).sort());
    expect(errored).toEqual(bad.flatMap((b) => [b, `${b}.reason.json`]).sort());
    for (const b of bad) expect((JSON.parse(readFileSync(join(errors, `${b}.reason.json`), 'utf8')) as { error: { code: string } }).error.code).toBe('no_msh');
    // No file content or file name in any log line at info or above.
    const loud = agentLogs.flat().filter((l) => !l.includes('"level":"debug"'));
    expect(loud.filter((l) => l.includes(prefix) || l.includes('MSH|'))).toEqual([]);
    passed = true;
  }, 240_000);
});
