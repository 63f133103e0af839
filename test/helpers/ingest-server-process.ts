// Runs the control plane's gRPC ingest alone (dist/control-plane/ingest/dev-server.js) as a child
// process, for uplink tests that need a real IngestServer and SQLite store without importing
// control-plane/ (lint forbids it outside control-plane/). Also reads its store file read-only.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { all, close, openDatabase } from '../../agent/buffer/sqlite.js';
import { REPO_ROOT } from './agent-process.js';

export const INGEST_DEV_SERVER = join(REPO_ROOT, 'dist', 'control-plane', 'ingest', 'dev-server.js');

export interface IngestServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly agentId: string;
  readonly secret: string;
  readonly dataDir: string;
  /** stderr lines (the server's JSON logs). */
  readonly logs: string[];
  readonly exited: Promise<void>;
  /** SIGTERM (graceful) or SIGKILL (crash); resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface IngestServerOptions {
  readonly dataDir: string;
  /** 0 (default): any free port. Pass the previous port to restart "the same" control plane. */
  readonly port?: number;
  readonly maxInFlight?: number;
  readonly maxBatchMessages?: number;
  readonly keepaliveTimeMs?: number;
}

export async function startIngestServer(options: IngestServerOptions, timeoutMs = 15_000): Promise<IngestServerProcess> {
  const args = [INGEST_DEV_SERVER, '--data-dir', options.dataDir, '--port', String(options.port ?? 0)];
  if (options.maxInFlight !== undefined) args.push('--max-in-flight', String(options.maxInFlight));
  if (options.maxBatchMessages !== undefined) args.push('--max-batch-messages', String(options.maxBatchMessages));
  if (options.keepaliveTimeMs !== undefined) args.push('--keepalive-time-ms', String(options.keepaliveTimeMs));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => logs.push(l));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const info = await new Promise<{ port: number; agentId: string; secret: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ingest dev-server did not start within ${timeoutMs} ms:\n${logs.join('\n')}`)), timeoutMs);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as { port: number; agentId: string; secret: string });
      } catch (err) {
        reject(err as Error);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`ingest dev-server exited before listening:\n${logs.join('\n')}`));
    });
  });
  return {
    child,
    ...info,
    dataDir: options.dataDir,
    logs,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

export interface ControlPlaneRow {
  readonly seq: number;
  readonly bufferId: string;
  readonly sourceId: string;
  readonly controlId: string;
  readonly size: number;
  /** Lower-case hex of the sha256 the control plane verified against the payload on arrival. */
  readonly sha256: string;
}

/** Every message row of the control plane's store (store.db in its data dir), in arrival order. Read-only. */
export async function readControlPlaneRows(dataDir: string): Promise<ControlPlaneRow[]> {
  const db = await openDatabase(join(dataDir, 'store.db'), true);
  try {
    const rows = await all<{ seq: number; buffer_id: string; source_id: string; control_id: string; size: number; sha: string }>(
      db,
      'SELECT seq, buffer_id, source_id, control_id, size, lower(hex(sha256)) AS sha FROM messages ORDER BY id',
    );
    return rows.map((r) => ({ seq: r.seq, bufferId: r.buffer_id, sourceId: r.source_id, controlId: r.control_id, size: r.size, sha256: r.sha }));
  } finally {
    await close(db);
  }
}
