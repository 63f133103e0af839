// DATA_DIR/fleet-commands.json: the ids of fleet commands this agent has taken, written (fsynced,
// atomically) BEFORE a command runs, so a redelivery — even after a crash mid-command — never runs
// it twice. Each entry keeps its result once known (a duplicate gets it republished) and is kept
// until its expires_at has passed (the broker cannot deliver it for execution after that anyway:
// an expired command is refused). Bounded: the oldest entries go first past MAX_ENTRIES.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { commandResultMessageSchema, type CommandResultMessage } from '../../proto/fleet/index.js';
import { writeSecretFileAtomic } from '../secret-file.js';

export const COMMAND_LEDGER_FILE = 'fleet-commands.json';
const MAX_ENTRIES = 2000;
/** Entries stay a little past their expiry, so clock steps do not reopen a just-expired id. */
const KEEP_AFTER_EXPIRY_MS = 60 * 60 * 1000;

const entrySchema = z.object({
  id: z.string(),
  type: z.string(),
  expires_at: z.string(),
  taken_at: z.string(),
  result: commandResultMessageSchema.nullable(),
});
type Entry = z.output<typeof entrySchema>;

const ledgerSchema = z.object({ entries: z.array(entrySchema) });

export type TakeOutcome = { readonly taken: true } | { readonly taken: false; readonly previous: CommandResultMessage | null };

export class CommandLedger {
  private readonly entries = new Map<string, Entry>();
  readonly path: string;

  constructor(dataDir: string) {
    this.path = join(dataDir, COMMAND_LEDGER_FILE);
    let text: string | undefined;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const parsed = ledgerSchema.safeParse(JSON.parse(text));
      // A damaged ledger would let commands run twice: refuse to guess, say what to do.
      if (!parsed.success) throw new Error(`${this.path} is damaged; remove it only if no command may be redelivered (it guards against running one twice)`);
      for (const e of parsed.data.entries) this.entries.set(e.id, e);
    }
  }

  /**
   * Records `id` durably and returns taken: true when it was never seen (the caller runs it now);
   * otherwise taken: false with the earlier result, if it finished.
   */
  take(id: string, type: string, expiresAt: string, now = Date.now()): TakeOutcome {
    const seen = this.entries.get(id);
    if (seen) return { taken: false, previous: seen.result };
    this.prune(now);
    this.entries.set(id, { id, type, expires_at: expiresAt, taken_at: new Date(now).toISOString(), result: null });
    this.save();
    return { taken: true };
  }

  /** The result, kept so a redelivered id gets it again (best effort: the id is already recorded). */
  finish(result: CommandResultMessage): void {
    const e = this.entries.get(result.id);
    if (!e) return;
    this.entries.set(result.id, { ...e, result });
    this.save();
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(now: number): void {
    for (const [id, e] of this.entries) {
      const expires = Date.parse(e.expires_at);
      if (Number.isFinite(expires) && expires + KEEP_AFTER_EXPIRY_MS < now) this.entries.delete(id);
    }
    // Map keeps insertion order: the oldest taken go first.
    for (const id of this.entries.keys()) {
      if (this.entries.size < MAX_ENTRIES) break;
      this.entries.delete(id);
    }
  }

  private save(): void {
    writeSecretFileAtomic(this.path, JSON.stringify({ entries: [...this.entries.values()] }) + '\n');
  }
}
