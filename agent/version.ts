// The agent's version, read once from package.json so there is one place to bump it.

import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // try the next location: the layout differs between source (vitest) and dist/
    }
  }
  return '0.0.0';
}

export const VERSION = readVersion();
