// Read-only view of the `files` table, for tools that must not write (import --dry-run): which
// files a source has already taken. A missing buffer file simply has taken nothing.

import { existsSync } from 'node:fs';
import { close, get, openDatabase } from './sqlite.js';

export interface TakenFileIndex {
  has(sourceId: string, sha256: Buffer): Promise<boolean>;
  close(): Promise<void>;
}

export async function openTakenFileIndex(bufferFile: string): Promise<TakenFileIndex> {
  if (!existsSync(bufferFile)) return { has: () => Promise.resolve(false), close: () => Promise.resolve() };
  const db = await openDatabase(bufferFile, true);
  const table = await get<{ n: number }>(db, "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'files'");
  const hasTable = (table?.n ?? 0) > 0;
  return {
    has: async (sourceId, sha256) => hasTable && (await get(db, 'SELECT 1 AS x FROM files WHERE source_id = ? AND sha256 = ?', [sourceId, sha256])) !== undefined,
    close: () => close(db),
  };
}
