// Runs after tsc in `npm run build`: what the compiler does not do for the built programs.
// - proto/**/*.proto go next to the compiled proto/index.js (dist/proto/), so the programs load
//   their contract from dist/ alone.
// - The bin entry points become executable: tsc writes files 0644, and `npx ferry-agent` (or
//   `npx ferry-control-plane`) runs the file itself.

import { chmodSync, cpSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
cpSync(join(root, 'proto', 'ferry'), join(root, 'dist', 'proto', 'ferry'), {
  recursive: true,
  filter: (src) => statSync(src).isDirectory() || src.endsWith('.proto'),
});
const { bin } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const file of Object.values(bin)) chmodSync(join(root, file), 0o755);
