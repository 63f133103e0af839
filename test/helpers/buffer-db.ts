// Read-only look at an agent's buffer file from a test: the plaintext columns of every row. Safe
// while the agent runs (WAL: readers never block the writer and see only committed transactions).

import { all, close, openDatabase } from '../../agent/buffer/sqlite.js';

export interface StoredRowInfo {
  readonly seq: number;
  readonly sourceId: string;
  readonly controlId: string;
  readonly size: number;
  /** Lower-case hex of the sha256 column (the hash of the plaintext payload). */
  readonly sha256: string;
}

export async function readBufferRows(bufferFile: string): Promise<StoredRowInfo[]> {
  const db = await openDatabase(bufferFile, true);
  try {
    const rows = await all<{ seq: number; source_id: string; control_id: string; size: number; sha: string }>(
      db,
      'SELECT seq, source_id, control_id, size, lower(hex(sha256)) AS sha FROM messages ORDER BY seq',
    );
    return rows.map((r) => ({ seq: r.seq, sourceId: r.source_id, controlId: r.control_id, size: r.size, sha256: r.sha }));
  } finally {
    await close(db);
  }
}

/** Rows per control id. */
export function countByControlId(rows: readonly StoredRowInfo[]): Map<string, StoredRowInfo[]> {
  const out = new Map<string, StoredRowInfo[]>();
  for (const r of rows) {
    const list = out.get(r.controlId);
    if (list) list.push(r);
    else out.set(r.controlId, [r]);
  }
  return out;
}
