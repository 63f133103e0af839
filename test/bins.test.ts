import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/agent-process.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };

describe('built programs', () => {
  // `npx ferry-agent …` in the quick start runs the bin file itself: it must be executable.
  it.each(Object.entries(pkg.bin))('%s is executable and runs by itself', (_name, file) => {
    const path = join(REPO_ROOT, file);
    expect(statSync(path).mode & 0o111).toBe(0o111);
    expect(execFileSync(path, ['version'], { encoding: 'utf8' }).trim()).toBe(pkg.version);
  });
});
