// Copies proto/**/*.proto next to the compiled proto/index.js (dist/proto/), so the built programs
// load their contract from dist/ alone. Runs after tsc in `npm run build`.

import { cpSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
cpSync(join(root, 'proto', 'ferry'), join(root, 'dist', 'proto', 'ferry'), {
  recursive: true,
  filter: (src) => statSync(src).isDirectory() || src.endsWith('.proto'),
});
