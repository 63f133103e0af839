// The command ledger on a real file: an id taken survives a "crash" (a new ledger on the same
// directory) so it is never run again, its result is kept for redeliveries, and old ids expire.

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { CommandLedger } from './command-ledger.js';
import { CommandRunner, type CommandHandlers } from './commands.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-ledger-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const inAMinute = (): string => new Date(Date.now() + 60_000).toISOString();

function handlers(runs: string[]): CommandHandlers {
  return {
    ping: () => (runs.push('ping'), { pong_at: 'now' }),
    reload: () => Promise.resolve((runs.push('reload'), {})),
    flush: () => (runs.push('flush'), { pending: 0 }),
    setLogLevel: (level) => (runs.push(`level:${level}`), { level }),
    restart: () => (runs.push('restart'), { result: {}, after: () => undefined }),
  };
}

describe('CommandLedger', () => {
  it('records an id before it runs: after a crash mid-command a redelivery is not run and gets no result', async () => {
    const first = new CommandLedger(dir);
    expect(first.take('c1', 'flush', inAMinute())).toEqual({ taken: true });
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    // "Crash": the result was never recorded. A new process reads the ledger.
    const runs: string[] = [];
    const runner = new CommandRunner(new CommandLedger(dir), handlers(runs), createLogger('silent'));
    const answer = await runner.handle({ id: 'c1', type: 'flush', args: {}, issued_at: new Date().toISOString(), expires_at: inAMinute() });
    expect(answer).toBeUndefined();
    expect(runs).toEqual([]);
  });

  it('keeps the result for a redelivery, and refuses an expired command without running it', async () => {
    const runs: string[] = [];
    const runner = new CommandRunner(new CommandLedger(dir), handlers(runs), createLogger('silent'));
    const cmd = { id: 'c2', type: 'set-log-level', args: { level: 'warn' }, issued_at: new Date().toISOString(), expires_at: inAMinute() };
    const a = await runner.handle(cmd);
    const b = await new CommandRunner(new CommandLedger(dir), handlers(runs), createLogger('silent')).handle(cmd);
    expect(runs).toEqual(['level:warn']);
    expect(b?.result).toEqual(a?.result);
    const expired = await runner.handle({ ...cmd, id: 'c3', expires_at: new Date(Date.now() - 1).toISOString() });
    expect(expired?.result).toMatchObject({ id: 'c3', status: 'expired' });
    expect(runs).toEqual(['level:warn']);
    // Not a command at all: a failed result when it names an id, nothing otherwise.
    expect((await runner.handle({ id: 'c4', type: 'format-disk' }))?.result).toMatchObject({ status: 'failed', error: { code: 'invalid_command' } });
    expect(await runner.handle('junk')).toBeUndefined();
  });

  it('forgets ids an hour after they expired', () => {
    const ledger = new CommandLedger(dir);
    const now = Date.now();
    ledger.take('old', 'ping', new Date(now - 2 * 3600_000).toISOString(), now);
    expect(ledger.has('old')).toBe(true);
    ledger.take('recent', 'ping', new Date(now - 60_000).toISOString(), now);
    expect(ledger.has('old')).toBe(false);
    ledger.take('new', 'ping', inAMinute(), now);
    expect(ledger.has('recent')).toBe(true);
    expect(new CommandLedger(dir).size).toBe(2);
  });
});
