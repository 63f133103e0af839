// One writer per buffer, across real processes (agent/buffer/lock.ts), and the `status` command's
// file_drop line:
//   - a running agent holds the buffer: a second agent and `ferry-agent import` on the same data
//     dir are refused, naming its pid; nothing of the import's files is stored;
//   - a buffer held by another process (as import holds it) keeps the agent from starting, naming
//     that pid; once released, the agent starts;
//   - a lock left by a killed process (its pid gone) is taken over; close removes it;
//   - `ferry-agent status` prints file_drop counters (files seen/taken/archived..., messages) and
//     the folder, not MLLP fields.
// Needs `npm run build` (spawns dist/agent/main.js).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyring, lockPathOf, MessageBuffer } from '../agent/buffer/index.js';
import { runAgentCli, startAgent, writeAgentConfig, type CliResult } from './helpers/agent-process.js';
import { realisticMessage } from './helpers/messages.js';
import { waitFor } from './helpers/wait.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ferry-lock-'));
  dirs.push(d);
  return d;
}

/** Runs `ferry-agent ARGS...` to completion (never throws on a non-zero exit). */
function cli(args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  return runAgentCli(args, timeoutMs);
}

describe('buffer lock and file_drop status', () => {
  it('a running agent keeps a second agent and an import off its buffer; status shows file_drop counters', async () => {
    const dir = tempDir();
    const inbox = join(dir, 'inbox');
    const archive = join(dir, 'archive');
    mkdirSync(inbox, { recursive: true });
    const agent = await startAgent({
      dir: join(dir, 'agent'),
      sources: [{ id: 'drop', type: 'file_drop', path: inbox, archive_dir: archive, error_dir: join(dir, 'error'), stable_secs: 1 }],
      config: { uplink: { enabled: false } },
    });
    try {
      const pid = agent.child.pid!;
      const dataDir = join(dir, 'agent', 'data');
      expect(readFileSync(lockPathOf(join(dataDir, 'buffer.db')), 'utf8').trim()).toBe(String(pid));

      // A file of three messages, renamed in whole: taken, archived.
      const staged = join(dir, 'f1.hl7');
      writeFileSync(staged, Buffer.concat([realisticMessage('LOCK-', 0), realisticMessage('LOCK-', 1), realisticMessage('LOCK-', 2)]));
      renameSync(staged, join(inbox, 'f1.hl7'));
      await waitFor(() => existsSync(archive) && readdirSync(archive).length === 1, 30_000, 'the file archived');

      const status = await cli(['status', '--admin', `http://127.0.0.1:${agent.adminPort}`]);
      expect(status.code, status.stderr).toBe(0);
      const line = status.stdout.split('\n').find((l) => l.startsWith('source drop '));
      expect(line).toBe(`source drop (file_drop ${inbox}): running; 1 files seen, 1 taken, 1 archived, 0 deleted, 0 errored, 0 refused, 0 duplicates, 0 pending; 3 messages`);
      expect(status.stdout).not.toContain('undefined');

      // A second agent on the same data dir: refused, naming the first one's pid.
      const secondConfig = writeAgentConfig({ dir: join(dir, 'second'), config: { data_dir: dataDir, uplink: { enabled: false } } });
      const second = await cli(['run', '--config', secondConfig]);
      expect(second.code).not.toBe(0);
      expect(second.stdout + second.stderr).toContain(`pid ${pid}`);

      // An import into the running agent's buffer: refused, nothing stored.
      const tree = join(dir, 'tree');
      mkdirSync(tree);
      writeFileSync(join(tree, 'a.hl7'), realisticMessage('LOCKIMP-', 0));
      const imp = await cli(['import', tree, '--source', 'legacy', '--data-dir', dataDir]);
      expect(imp.code).not.toBe(0);
      expect(imp.stderr).toContain(`pid ${pid}`);

      // The agent itself is unharmed: its status still answers with the same counts.
      const again = await cli(['status', '--admin', `http://127.0.0.1:${agent.adminPort}`, '--json']);
      const body = JSON.parse(again.stdout) as { buffer: { depth: number; last_seq: number } };
      expect(body.buffer).toMatchObject({ depth: 3, last_seq: 3 });
    } finally {
      await agent.stop();
    }
    // A clean stop releases the lock.
    expect(existsSync(lockPathOf(join(dir, 'agent', 'data', 'buffer.db')))).toBe(false);
  }, 90_000);

  it('a buffer held by another process (as an import holds it) keeps the agent from starting, naming that pid', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const bufferFile = join(dataDir, 'buffer.db');
    const held = await MessageBuffer.open({ path: bufferFile, keyring: Keyring.loadOrCreate(join(dataDir, 'buffer-keys.json')), maxBytes: 1 << 20 });
    const configPath = writeAgentConfig({ dir, config: { data_dir: dataDir, uplink: { enabled: false } } });
    try {
      const refused = await cli(['run', '--config', configPath]);
      expect(refused.code).not.toBe(0);
      expect(refused.stdout + refused.stderr).toContain(`pid ${process.pid}`);
      // In-process too: a second open of a held buffer is refused.
      await expect(MessageBuffer.open({ path: bufferFile, keyring: Keyring.load(join(dataDir, 'buffer-keys.json')), maxBytes: 1 << 20 })).rejects.toThrow(/already open/);
    } finally {
      await held.close();
    }
    expect(existsSync(lockPathOf(bufferFile))).toBe(false);
    // Released: the agent starts.
    const agent = await startAgent({ dir, config: { data_dir: dataDir, uplink: { enabled: false } } });
    expect(readFileSync(lockPathOf(bufferFile), 'utf8').trim()).toBe(String(agent.child.pid));
    await agent.stop();
  }, 60_000);

  it('takes over a lock whose process is gone (killed), and removes its own on close', async () => {
    const dir = tempDir();
    const bufferFile = join(dir, 'buffer.db');
    // A real pid that no longer runs: a child that has exited.
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    writeFileSync(lockPathOf(bufferFile), `${deadPid}\n`, { mode: 0o600 });
    const buffer = await MessageBuffer.open({ path: bufferFile, keyring: Keyring.loadOrCreate(join(dir, 'keys.json')), maxBytes: 1 << 20 });
    expect(readFileSync(lockPathOf(bufferFile), 'utf8').trim()).toBe(String(process.pid));
    await buffer.close();
    expect(existsSync(lockPathOf(bufferFile))).toBe(false);
  });
});
