// Data keys for payload encryption at rest in the control plane's store: one JSON file (mode 0600)
// in the data directory, `store-keys.json`, created with one key on first start.
//
// Keys have ids so rotation only adds: new rows are sealed with the active key, old rows stay
// readable with the key their key_id column names. Ferry never removes a key. Any store
// implementation (SQLite now, PostgreSQL later) seals through this class.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { NONCE_BYTES, nextNonce } from '../../proto/nonces.js';
import { ControlPlaneError } from '../errors.js';

const KEY_BYTES = 32;
const TAG_BYTES = 16;

interface KeyFile {
  readonly version: 1;
  readonly active: string;
  readonly keys: readonly { id: string; key: string; created_at: string }[];
}

export class StoreKeyring {
  private constructor(
    readonly path: string,
    readonly activeKeyId: string,
    private readonly keys: ReadonlyMap<string, Buffer>,
  ) {}

  /** Loads the key file, creating it (mode 0600) with one fresh key when it does not exist. */
  static loadOrCreate(path: string): StoreKeyring {
    if (!exists(path)) writeKeyFile(path, withNewKey({ version: 1, active: '', keys: [] }), true);
    return StoreKeyring.load(path);
  }

  static load(path: string): StoreKeyring {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new ControlPlaneError('key_file_permissions', `key file ${path} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
    }
    let parsed: KeyFile;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
    } catch (cause) {
      throw new ControlPlaneError('key_file_invalid', `key file ${path} is not valid JSON`, { cause });
    }
    const keys = new Map<string, Buffer>();
    for (const k of parsed.keys ?? []) {
      const key = Buffer.from(k.key, 'base64');
      if (key.length !== KEY_BYTES) throw new ControlPlaneError('key_file_invalid', `key ${k.id} in ${path} is not ${KEY_BYTES} bytes`);
      keys.set(k.id, key);
    }
    if (!keys.has(parsed.active)) throw new ControlPlaneError('key_file_invalid', `key file ${path} names active key "${parsed.active}" but does not hold it`);
    return new StoreKeyring(path, parsed.active, keys);
  }

  /** Adds a new key to the file and makes it active; returns the updated keyring. */
  static rotate(path: string): StoreKeyring {
    const current = StoreKeyring.load(path);
    const file = JSON.parse(readFileSync(current.path, 'utf8')) as KeyFile;
    writeKeyFile(path, withNewKey(file), false);
    return StoreKeyring.load(path);
  }

  get keyIds(): readonly string[] {
    return [...this.keys.keys()];
  }

  /** nonce ‖ ciphertext ‖ tag under the active key; `aad` binds the blob to its row. */
  seal(plaintext: Buffer, aad: Buffer): Buffer {
    const key = this.keys.get(this.activeKeyId);
    if (!key) throw new ControlPlaneError('key_missing', `active key ${this.activeKeyId} is missing`);
    const nonce = nextNonce();
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(aad);
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    return Buffer.concat([nonce, head, tail, cipher.getAuthTag()], NONCE_BYTES + head.length + tail.length + TAG_BYTES);
  }

  open(keyId: string, blob: Buffer, aad: Buffer): Buffer {
    const key = this.keys.get(keyId);
    if (!key) throw new ControlPlaneError('key_missing', `row is sealed with key ${keyId}, which is not in ${this.path}`);
    if (blob.length < NONCE_BYTES + TAG_BYTES) throw new ControlPlaneError('payload_corrupt', 'sealed payload is shorter than nonce and tag');
    const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(blob.subarray(NONCE_BYTES, blob.length - TAG_BYTES)), decipher.final()]);
    } catch (cause) {
      throw new ControlPlaneError('payload_corrupt', 'payload failed authentication (wrong key, moved row, or corruption)', { cause });
    }
  }
}

/**
 * Authenticated data for a stored payload: it opens only in the row of the agent, buffer and seq it
 * was written for, under the key id the row names.
 */
export function payloadAad(agentId: string, bufferId: string, seq: number, keyId: string): Buffer {
  return Buffer.from(`ferry-cp-payload-v1\0${agentId}\0${bufferId}\0${seq}\0${keyId}`, 'utf8');
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function withNewKey(file: KeyFile): KeyFile {
  const id = `k${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  return {
    version: 1,
    active: id,
    keys: [...(file.keys ?? []), { id, key: randomBytes(KEY_BYTES).toString('base64'), created_at: new Date().toISOString() }],
  };
}

/** Writes atomically: temp file with mode 0600, fsync, rename, fsync the directory. */
function writeKeyFile(path: string, content: KeyFile, exclusive: boolean): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(content, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // Never replace a key file another process created meanwhile: rows sealed with it would be lost.
  if (exclusive && exists(path)) throw new ControlPlaneError('key_file_exists', `key file ${path} appeared while creating it`);
  renameSync(tmp, path);
  const dirFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
