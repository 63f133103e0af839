// Listing cursors: keyset paging on the store's own row id, which only grows, so pages stay stable
// while new messages arrive. The cursor is opaque to clients: base64url of `v1:<a|d>:<last id>`.

import { ControlPlaneError } from '../errors.js';

export interface Cursor {
  readonly order: 'asc' | 'desc';
  readonly afterId: number;
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`v1:${cursor.order === 'asc' ? 'a' : 'd'}:${cursor.afterId}`, 'utf8').toString('base64url');
}

export function decodeCursor(text: string): Cursor {
  const match = /^v1:([ad]):(\d{1,16})$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  const afterId = match ? Number(match[2]) : NaN;
  if (!match || text.length > 64 || !Number.isSafeInteger(afterId)) throw new ControlPlaneError('cursor_invalid', 'cursor is not one this store issued');
  return { order: match[1] === 'a' ? 'asc' : 'desc', afterId };
}
