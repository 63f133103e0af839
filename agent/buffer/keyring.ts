// Data keys for payload encryption at rest, kept in one JSON file (mode 0600) beside the buffer.
//
// Keys have ids so that rotation only adds: new rows are sealed with the active key, old rows stay
// readable with the key named in their key_id column. A key is never removed by Ferry.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { NONCE_BYTES, nextNonce } from '../../proto/nonces.js';
import { FerryError } from '../errors.js';
import { writeSecretFileAtomic } from '../secret-file.js';

const KEY_BYTES = 32;
const TAG_BYTES = 16;

interface KeyFile {
  readonly version: 1;
  readonly active: string;
  readonly keys: readonly { id: string; key: string; created_at: string }[];
}

export class Keyring {
  private constructor(
    readonly path: string,
    readonly activeKeyId: string,
    private readonly keys: ReadonlyMap<string, Buffer>,
  ) {}

  /** Loads the key file, creating it (mode 0600) with one fresh key when it does not exist. */
  static loadOrCreate(path: string): Keyring {
    try {
      statSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The first key is in the first write: a crash can leave no file or a whole one, never a
      // file without a key.
      writeKeyFile(path, withNewKey({ version: 1, active: '', keys: [] }), true);
    }
    return Keyring.load(path);
  }

  static load(path: string): Keyring {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new FerryError('key_file_permissions', `key file ${path} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
    }
    let parsed: KeyFile;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
    } catch (cause) {
      throw new FerryError('key_file_invalid', `key file ${path} is not valid JSON`, { cause });
    }
    const keys = new Map<string, Buffer>();
    for (const k of parsed.keys ?? []) {
      const key = Buffer.from(k.key, 'base64');
      if (key.length !== KEY_BYTES) throw new FerryError('key_file_invalid', `key ${k.id} in ${path} is not ${KEY_BYTES} bytes`);
      keys.set(k.id, key);
    }
    if (!keys.has(parsed.active)) throw new FerryError('key_file_invalid', `key file ${path} names active key "${parsed.active}" but does not hold it`);
    return new Keyring(path, parsed.active, keys);
  }

  /** Adds a new key to the file and makes it the active one; returns the updated keyring. */
  static rotate(path: string): Keyring {
    const current = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
    writeKeyFile(path, withNewKey(current), false);
    return Keyring.load(path);
  }

  get keyIds(): readonly string[] {
    return [...this.keys.keys()];
  }

  /** nonce ‖ ciphertext ‖ tag, sealed with the active key; aad binds the blob to its row. */
  seal(plaintext: Buffer, aad: Buffer): Buffer {
    const out = Buffer.allocUnsafe(Keyring.sealedLength(plaintext.length));
    this.sealInto(plaintext, aad, out, 0);
    return out;
  }

  /** Bytes seal() makes of a plaintext of `length` bytes. */
  static sealedLength(length: number): number {
    return NONCE_BYTES + length + TAG_BYTES;
  }

  /**
   * seal(), written into `out` at `at`: bulk writers seal many payloads into one block. Returns the
   * bytes written, sealedLength(plaintext.length).
   */
  sealInto(plaintext: Buffer, aad: Buffer, out: Buffer, at: number): number {
    const key = this.keys.get(this.activeKeyId);
    if (!key) throw new FerryError('key_missing', `active key ${this.activeKeyId} is missing`);
    const nonce = nextNonce();
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(aad);
    nonce.copy(out, at);
    let pos = at + NONCE_BYTES;
    pos += cipher.update(plaintext).copy(out, pos);
    pos += cipher.final().copy(out, pos);
    pos += cipher.getAuthTag().copy(out, pos);
    return pos - at;
  }

  open(keyId: string, blob: Buffer, aad: Buffer): Buffer {
    const key = this.keys.get(keyId);
    if (!key) throw new FerryError('key_missing', `row is sealed with key ${keyId}, which is not in ${this.path}`);
    if (blob.length < NONCE_BYTES + TAG_BYTES) throw new FerryError('payload_corrupt', 'sealed payload is shorter than nonce and tag');
    const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    try {
      const head = decipher.update(blob.subarray(NONCE_BYTES, blob.length - TAG_BYTES));
      const tail = decipher.final();
      // GCM's final() verifies the tag and yields no bytes: skip the copy (one per row read).
      return tail.length === 0 ? head : Buffer.concat([head, tail]);
    } catch (cause) {
      throw new FerryError('payload_corrupt', 'payload failed authentication (wrong key, moved row, or corruption)', { cause });
    }
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

/** Writes the key file atomically (mode 0600); `exclusive` never replaces a file another process made meanwhile. */
function writeKeyFile(path: string, content: KeyFile, exclusive: boolean): void {
  writeSecretFileAtomic(path, JSON.stringify(content, null, 2) + '\n', () => {
    if (!exclusive) return;
    try {
      statSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    throw new FerryError('key_file_exists', `key file ${path} appeared while creating it`);
  });
}
