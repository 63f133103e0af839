// The source schemas: what an `mllp` listener and a `file_drop` watcher accept. Used by the agent's
// local file and by fleet policies alike (a policy's `sources` replaces the file's).

import { posix } from 'node:path';
import { z } from 'zod';
import { cidr, listenAddress, secs, size, sourceId, tlsSchema } from './fields.js';

export const mllpSourceSchema = z
  .object({
    id: sourceId,
    type: z.literal('mllp'),
    listen: listenAddress().default('0.0.0.0:2575'),
    max_message_bytes: size('max_message_bytes').default(16 * 1024 * 1024),
    max_connections: z.number().int().positive().default(256),
    partial_frame_timeout_secs: secs('partial_frame_timeout_secs').default(60),
    idle_timeout_secs: secs('idle_timeout_secs').default(600),
    dedupe_window_secs: z.number().min(0).default(300),
    /** Frames one connection may have awaiting their commit before reading pauses (pipelining depth). */
    max_in_flight_per_connection: z.number().int().positive().default(1024),
    allow_ips: z.array(cidr).optional(),
    tls: tlsSchema.optional(),
  })
  .strict();

/**
 * A watched folder. A file is taken once complete (its size stable for `stable_secs`, or renamed
 * in), its messages committed with its sha256, then it moves to `archive_dir` (or is deleted with
 * `delete_after`). Unparseable files move to `error_dir` with a `.reason.json`.
 * `archive_dir` and `error_dir` may not be the watched folder itself; when they lie inside it
 * (with `recursive`), the watcher leaves them out on its own.
 */
export const fileDropSourceSchema = z
  .object({
    id: sourceId,
    type: z.literal('file_drop'),
    path: z.string().min(1),
    /** Globs relative to `path`; a file must match one include and no exclude. */
    include: z.array(z.string().min(1)).default(['**/*']),
    exclude: z.array(z.string().min(1)).default([]),
    /** Dot-files and temporary names (*.tmp, *.part, *.swp, ~) are skipped unless this is false. */
    ignore_temporary: z.boolean().default(true),
    recursive: z.boolean().default(false),
    /** Poll instead of inotify (network shares: NFS, SMB). */
    polling: z.boolean().default(false),
    poll_interval_secs: secs('poll_interval_secs').default(1),
    archive_dir: z.string().min(1).optional(),
    error_dir: z.string().min(1),
    delete_after: z.boolean().default(false),
    /** A file is taken once its size and mtime have not changed for this long. */
    stable_secs: z.number().min(0).default(2),
    max_file_bytes: size('max_file_bytes').default(64 * 1024 * 1024),
    /** How long the buffer remembers a taken file's hash (crash reconciliation, resent files); 0: forever. */
    remember_files_days: z.number().min(0).default(90),
  })
  .strict()
  .superRefine((s, ctx) => {
    const same = (a: string, b: string): boolean => posix.resolve('/', a) === posix.resolve('/', b);
    if (s.archive_dir !== undefined && same(s.archive_dir, s.path)) ctx.addIssue({ code: 'custom', path: ['archive_dir'], message: 'archive_dir must not be the watched folder (path)' });
    if (same(s.error_dir, s.path)) ctx.addIssue({ code: 'custom', path: ['error_dir'], message: 'error_dir must not be the watched folder (path)' });
    if (s.archive_dir !== undefined && same(s.archive_dir, s.error_dir)) ctx.addIssue({ code: 'custom', path: ['error_dir'], message: 'error_dir must differ from archive_dir' });
    if (s.delete_after && s.archive_dir !== undefined) ctx.addIssue({ code: 'custom', path: ['archive_dir'], message: 'set archive_dir or delete_after: true, not both' });
    if (!s.delete_after && s.archive_dir === undefined) ctx.addIssue({ code: 'custom', path: ['archive_dir'], message: 'archive_dir is required unless delete_after is true' });
  });

export const sourceSchema = z.discriminatedUnion('type', [mllpSourceSchema, fileDropSourceSchema]);

/** Sources with unique ids: every duplicate is reported at its index. */
export const sourcesSchema = z.array(sourceSchema).superRefine((sources, ctx) => {
  const seen = new Map<string, number>();
  sources.forEach((s, i) => {
    const first = seen.get(s.id);
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate source id "${s.id}" (also sources[${first}])` });
    seen.set(s.id, i);
  });
});

export type MllpSourceConfig = z.output<typeof mllpSourceSchema>;
export type FileDropSourceConfig = z.output<typeof fileDropSourceSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
