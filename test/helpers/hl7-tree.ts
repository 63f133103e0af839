// Builds trees of HL7 files for the import and file_drop tests and benchmark: every message has a
// unique control id, so a test can count each one in the buffer.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realisticMessage } from './messages.js';

export interface TreeFile {
  readonly rel: string;
  readonly bytes: Buffer;
  readonly controlIds: readonly string[];
}

/** `files` files of `perFile` messages each, spread over `folders` sub-folders (0: flat). */
export function writeHl7Tree(root: string, options: { files: number; perFile: number; prefix: string; folders?: number; terminator?: string }): TreeFile[] {
  const out: TreeFile[] = [];
  const folders = options.folders ?? 0;
  let n = 0;
  for (let f = 0; f < options.files; f++) {
    const ids: string[] = [];
    const parts: Buffer[] = [];
    for (let m = 0; m < options.perFile; m++) {
      parts.push(realisticMessage(options.prefix, n));
      ids.push(`${options.prefix}${String(n).padStart(10, '0')}`);
      if (options.terminator) parts.push(Buffer.from(options.terminator));
      n++;
    }
    const dir = folders > 0 ? join(root, `d${f % folders}`) : root;
    mkdirSync(dir, { recursive: true });
    const rel = folders > 0 ? `d${f % folders}/f${String(f).padStart(6, '0')}.hl7` : `f${String(f).padStart(6, '0')}.hl7`;
    const bytes = Buffer.concat(parts);
    writeFileSync(join(root, rel), bytes);
    out.push({ rel, bytes, controlIds: ids });
  }
  return out;
}
