// Offline integrity check of a buffer file: SQLite's own check, then every row opened with its key
// and compared with its stored hash. Reports row numbers and reasons, never payload content.

import { createHash } from 'node:crypto';
import type { Keyring } from './keyring.js';
import { rowAad } from './buffer.js';
import { all, close, get, openDatabase } from './sqlite.js';
import { MESSAGE_COLUMNS } from './schema.js';

export interface CheckReport {
  readonly ok: boolean;
  readonly sqliteIntegrity: string;
  readonly rows: number;
  readonly failures: readonly { seq: number; reason: string }[];
  readonly keyIds: readonly string[];
}

const MAX_REPORTED_FAILURES = 100;
const CHECK_PAGE_ROWS = 500;

export async function checkBuffer(path: string, keyring: Keyring): Promise<CheckReport> {
  const db = await openDatabase(path, true);
  try {
    const integrity = await get<{ integrity_check: string }>(db, 'PRAGMA integrity_check');
    const idRow = await get<{ value: string }>(db, "SELECT value FROM meta WHERE key = 'buffer_id'");
    const bufferId = idRow?.value ?? '';
    const failures: { seq: number; reason: string }[] = [];
    let failed = 0;
    let rows = 0;
    // A page of rows at a time, by seq: memory stays flat for a buffer of any size.
    let after = 0;
    for (;;) {
      const page = await all<Record<string, unknown>>(db, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`, [after, CHECK_PAGE_ROWS]);
      for (const row of page) {
        const seq = Number(row.seq);
        rows++;
        const reason = checkRow(row, seq, bufferId, keyring);
        if (reason) {
          failed++;
          if (failures.length < MAX_REPORTED_FAILURES) failures.push({ seq, reason });
        }
        after = seq;
      }
      if (page.length < CHECK_PAGE_ROWS) break;
    }
    const sqliteIntegrity = integrity?.integrity_check ?? 'unknown';
    return { ok: sqliteIntegrity === 'ok' && failed === 0, sqliteIntegrity, rows, failures, keyIds: keyring.keyIds };
  } finally {
    await close(db);
  }
}

function checkRow(row: Record<string, unknown>, seq: number, bufferId: string, keyring: Keyring): string | undefined {
  const keyId = String(row.key_id);
  let payload: Buffer;
  try {
    payload = keyring.open(keyId, row.payload as Buffer, rowAad(bufferId, seq, String(row.source_id), keyId));
  } catch (err) {
    return (err as Error).message;
  }
  if (payload.length !== Number(row.size)) return `size ${payload.length} does not match recorded ${String(row.size)}`;
  const sha = createHash('sha256').update(payload).digest();
  if (!sha.equals(row.sha256 as Buffer)) return 'sha256 does not match the recorded hash';
  return undefined;
}
