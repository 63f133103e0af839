// DATA_DIR/credentials.json: who this agent is to the control plane (id, secret) and where the
// control plane is. Written once by `ferry-agent enroll` (mode 0600, atomically), read at start.
// The secret never leaves this file except in gRPC/MQTT credentials; it is never logged.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FerryError } from '../errors.js';
import { writeSecretFileAtomic } from '../secret-file.js';

export const CREDENTIALS_FILE = 'credentials.json';

const credentialsSchema = z.object({
  agent_id: z.string().min(1).max(512),
  secret: z.string().min(1).max(512),
  control_plane_url: z.string().min(1),
  /** host:port of the control plane's gRPC ingest, as the control plane announced it at enrollment. */
  grpc_target: z.string().min(1),
  enrolled_at: z.string(),
  /** The fleet MQTT broker (mqtt:// or mqtts://), when the control plane announced one at enrollment. */
  mqtt_url: z.string().min(1).optional(),
});

export type AgentCredentials = z.output<typeof credentialsSchema>;

export function credentialsPath(dataDir: string): string {
  return join(dataDir, CREDENTIALS_FILE);
}

/** The agent's credentials, or undefined when it has not been enrolled. Throws on a bad file. */
export function readCredentials(dataDir: string): AgentCredentials | undefined {
  const path = credentialsPath(dataDir);
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if ((mode & 0o077) !== 0) {
    throw new FerryError('credentials_permissions', `credentials file ${path} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new FerryError('credentials_invalid', `credentials file ${path} is not valid JSON; enroll again with --force`, { cause });
  }
  const parsed = credentialsSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(root)'))].join(', ');
    throw new FerryError('credentials_invalid', `credentials file ${path} is incomplete or malformed (${fields}); enroll again with --force`);
  }
  return parsed.data;
}

/** Writes the credentials file atomically with mode 0600 (see writeSecretFileAtomic). */
export function writeCredentials(dataDir: string, credentials: AgentCredentials, options: { force?: boolean } = {}): string {
  const path = credentialsPath(dataDir);
  if (!options.force) {
    let exists = true;
    try {
      statSync(path);
    } catch {
      exists = false;
    }
    if (exists) throw new FerryError('credentials_exist', `${path} already exists: this agent is enrolled. Use --force to replace its credentials`);
  }
  writeSecretFileAtomic(path, JSON.stringify(credentials, null, 2) + '\n');
  return path;
}
