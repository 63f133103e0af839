// The `import` subcommand's command-line face: argument checks, the progress bar on a TTY, the
// per-file dry-run report, and a plain summary otherwise. Exit codes: 0 every file taken or already
// imported, 1 some failed (or the buffer filled up), 2 usage.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sourceId as sourceIdSchema, parseSize } from '../../proto/policy/index.js';
import type { AgentConfig } from '../config/index.js';
import { formatDuration, ProgressBar } from './progress.js';
import { runImport, type FileOutcome } from './import.js';

export interface ImportCommandInput {
  readonly dir: string | undefined;
  readonly sourceId: string | undefined;
  readonly include: string | undefined;
  readonly dryRun: boolean;
  readonly maxFileBytes: string | undefined;
  readonly config: AgentConfig;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

export const IMPORT_USAGE =
  'ferry-agent import DIR --source ID [--include GLOB] [--dry-run] [--max-file-bytes SIZE] [--config FILE] [--data-dir DIR]';

export async function importCommand(input: ImportCommandInput): Promise<number> {
  const { stdout, stderr } = input;
  if (!input.dir || !input.sourceId) {
    stderr.write(`import needs a folder and a source id:\n  ${IMPORT_USAGE}\n`);
    return 2;
  }
  if (!sourceIdSchema.safeParse(input.sourceId).success) {
    stderr.write(`--source "${input.sourceId}" is not a valid source id (1-64 letters, digits, ".", "_" or "-")\n`);
    return 2;
  }
  if (!existsSync(input.dir) || !statSync(input.dir).isDirectory()) {
    stderr.write(`${input.dir} is not a folder\n`);
    return 2;
  }
  const maxFileBytes = input.maxFileBytes === undefined ? 64 * 1024 * 1024 : parseSize(input.maxFileBytes);
  if (maxFileBytes === undefined || maxFileBytes <= 0) {
    stderr.write(`--max-file-bytes "${input.maxFileBytes}" is not a size (e.g. 256MiB)\n`);
    return 2;
  }
  const config = input.config;
  const bar = stderr.isTTY && !input.dryRun ? new ProgressBar(stderr) : undefined;
  const failures: FileOutcome[] = [];
  const report = await runImport({
    dir: input.dir,
    sourceId: input.sourceId,
    include: input.include ? [input.include] : ['**/*'],
    dryRun: input.dryRun,
    bufferFile: join(config.data_dir, 'buffer.db'),
    keyFile: config.buffer.key_file ?? join(config.data_dir, 'buffer-keys.json'),
    maxBytes: config.buffer.max_bytes,
    maxFileBytes,
    onProgress: bar ? (p) => bar.update(p) : undefined,
    onFile: (f) => {
      if (f.status === 'failed') failures.push(f);
      if (input.dryRun) stdout.write(`${describeOutcome(f)}\n`);
    },
  });
  bar?.finish({ filesDone: report.files, filesTotal: report.files, bytesDone: report.bytes, bytesTotal: report.bytes, messages: report.messages, failed: report.failed, elapsedMs: report.seconds * 1000 });
  if (!input.dryRun) for (const f of failures) stderr.write(`${describeOutcome(f)}\n`);
  const rate = report.seconds > 0 ? `, ${(report.messages / report.seconds).toFixed(0)} msgs/s, ${(report.bytes / 1e6 / report.seconds).toFixed(1)} MB/s` : '';
  stdout.write(
    input.dryRun
      ? `dry run: ${report.files} files: ${report.taken} would be taken (${report.messages} messages), ${report.alreadyImported} already imported, ${report.failed} would fail. Nothing was changed.\n`
      : `imported ${report.taken} files (${report.messages} messages) as source ${input.sourceId} in ${formatDuration(report.seconds)}${rate}; ` +
          `${report.alreadyImported} already imported (skipped), ${report.failed} failed. Files are left in place.\n` +
          (report.stoppedFull ? `the buffer is full (buffer.max_bytes): run the agent to deliver, then run the same import again to continue.\n` : ''),
  );
  return report.failed > 0 || report.stoppedFull ? 1 : 0;
}

function describeOutcome(f: FileOutcome): string {
  switch (f.status) {
    case 'taken':
      return `take     ${f.file} (${f.messages} message${f.messages === 1 ? '' : 's'})`;
    case 'already_imported':
      return `skip     ${f.file} (already imported)`;
    case 'failed':
      return `fail     ${f.file}: ${f.code}: ${f.message}`;
  }
}
