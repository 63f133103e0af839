// `ferry-agent import` as the operator runs it: killed with SIGKILL part-way (twice), then run
// again to the end. Every message of every file must be in the buffer exactly once, every file
// remembered once, and the files left in place. The agent's buffer being open elsewhere is refused.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { lockPathOf } from '../agent/buffer/index.js';
import { all, close, exec, openDatabase } from '../agent/buffer/sqlite.js';
import { AGENT_MAIN, startAgent } from './helpers/agent-process.js';
import { countByControlId, readBufferRows } from './helpers/buffer-db.js';
import { writeHl7Tree } from './helpers/hl7-tree.js';

const execFileP = promisify(execFile);
const FILES = 8000;
const PER_FILE = 5;

async function filesTaken(bufferFile: string): Promise<number> {
  if (!existsSync(bufferFile)) return 0;
  const db = await openDatabase(bufferFile, true);
  try {
    // A reader can meet the import mid-checkpoint (SQLITE_BUSY): wait rather than read it as 0,
    // which would let the run finish unseen. Only a buffer without its tables yet counts as 0.
    await exec(db, 'PRAGMA busy_timeout = 5000;');
    const rows = await all<{ n: number }>(db, "SELECT COUNT(*) AS n FROM files WHERE source_id = 'legacy'").catch((err: Error) => {
      if (/no such table/.test(err.message)) return [{ n: 0 }];
      throw err;
    });
    return rows[0]?.n ?? 0;
  } finally {
    await close(db);
  }
}

describe('ferry-agent import, interrupted and resumed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-import-resume-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes every message once across SIGKILLs and a final run; files stay in place', async () => {
    expect(existsSync(AGENT_MAIN), `${AGENT_MAIN} is missing: run "npm run build" first`).toBe(true);
    const tree = join(dir, 'tree');
    const data = join(dir, 'data');
    const bufferFile = join(data, 'buffer.db');
    const files = writeHl7Tree(tree, { files: FILES, perFile: PER_FILE, prefix: 'MIG-', folders: 7, terminator: '\r\n' });
    const args = [AGENT_MAIN, 'import', tree, '--source', 'legacy', '--include', '**/*.hl7', '--data-dir', data];
    const killedAt: number[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const before = await filesTaken(bufferFile);
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_code, signal) => res(signal)));
      // Kill once this run has committed 100 more files. A commit holds at most 4,096 messages
      // (about 800 of these files) and a fast machine commits several between two looks: the tree
      // is large enough that the second run is still far from its end when the kill lands.
      const target = before + 100;
      const deadline = Date.now() + 60_000;
      // Look only once the run holds the buffer's lock: import refuses to start while any other
      // process (this test's reader included) has the buffer open, so an early look could make it
      // exit instead of importing.
      const lock = lockPathOf(bufferFile);
      const holdsLock = (): boolean => existsSync(lock) && readFileSync(lock, 'utf8').trim() === String(child.pid);
      while (child.exitCode === null && !holdsLock() && Date.now() < deadline) await sleep(2);
      while (child.exitCode === null && (await filesTaken(bufferFile)) < target && Date.now() < deadline) await sleep(2);
      child.kill('SIGKILL');
      expect(await exited, `import ended on its own before the kill: ${stderr}`).toBe('SIGKILL');
      killedAt.push(await filesTaken(bufferFile));
    }
    expect(killedAt[0]).toBeGreaterThan(0);
    expect(killedAt[1]).toBeLessThan(FILES);

    const { stdout } = await execFileP(process.execPath, args);
    expect(stdout).toMatch(new RegExp(`imported ${FILES - killedAt[1]!} files \\(${(FILES - killedAt[1]!) * PER_FILE} messages\\).*${killedAt[1]} already imported \\(skipped\\), 0 failed`));

    const rows = await readBufferRows(bufferFile);
    const byId = countByControlId(rows);
    const lost: string[] = [];
    const duplicated: string[] = [];
    for (const f of files) {
      for (const id of f.controlIds) {
        const n = byId.get(id)?.length ?? 0;
        if (n === 0) lost.push(id);
        if (n > 1) duplicated.push(`${id} x${n}`);
      }
    }
    console.log(`import resume: ${FILES} files / ${FILES * PER_FILE} messages; killed at ${killedAt.join(', ')} files committed; stored ${rows.length} rows, lost ${lost.length}, duplicated ${duplicated.length}`);
    expect(lost).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(rows.length).toBe(FILES * PER_FILE);
    expect(await filesTaken(bufferFile)).toBe(FILES);
    for (const f of files.slice(0, 50)) expect(existsSync(join(tree, f.rel))).toBe(true);
  }, 180_000);

  it('refuses while the agent runs on the same data directory', async () => {
    const agentDir = join(dir, 'running');
    const agent = await startAgent({ dir: agentDir });
    try {
      const result = await execFileP(process.execPath, [AGENT_MAIN, 'import', join(dir, 'tree'), '--source', 'legacy', '--data-dir', join(agentDir, 'data')]).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => err,
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`open in another process (pid ${agent.child.pid})`);
    } finally {
      await agent.stop();
    }
  });
});
