// Regenerates the TypeScript types for proto/ferry/v1/*.proto with proto-loader-gen-types.
// Usage: node scripts/proto-gen.js [OUT_DIR]   (default proto/generated; `npm run proto:gen`)
// The options here must match LOADER_OPTIONS in proto/index.ts: the types describe what the loader
// produces. The drift test (proto/generated.test.ts) runs this into a temp dir and compares.

import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const outDir = resolve(process.argv[2] ?? join(root, 'proto', 'generated'));
const protoRoot = join(root, 'proto');
const files = readdirSync(join(protoRoot, 'ferry', 'v1'))
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => `ferry/v1/${f}`);

const require = createRequire(import.meta.url);
const bin = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build', 'bin', 'proto-loader-gen-types.js');

// Start from an empty folder so a removed message leaves no stale file behind.
rmSync(outDir, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    bin,
    '--longs=Number',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--includeComments',
    '--grpcLib=@grpc/grpc-js',
    '--importFileExtension=.js',
    '-I',
    relative(root, protoRoot),
    `--outDir=${outDir}`,
    ...files,
  ],
  { cwd: root, stdio: 'inherit' },
);
