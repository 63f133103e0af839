// loadServerTls: every way a certificate setup can be wrong stops the start with the file and the
// reason (never the key's bytes); plaintextListeners: which listeners the start-up warning names.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts } from './certs.js';
import { parse } from 'yaml';
import { validateConfig } from './config/index.js';
import { loadServerTls, plaintextListeners } from './tls.js';

let dir: string;
let pair: { cert_file: string; key_file: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-cp-tls-'));
  const made = makeCerts({ outDir: join(dir, 'a'), hosts: ['ferry.example.org'] });
  pair = { cert_file: made.serverCert, key_file: made.serverKey };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(yaml: Record<string, unknown>): ReturnType<typeof validateConfig> & { ok: true } {
  const result = validateConfig(yaml);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result;
}

describe('loadServerTls', () => {
  it('loads a matching pair and names who it is for', () => {
    const tls = loadServerTls(pair);
    expect(tls.subjectAltName).toContain('DNS:ferry.example.org');
    expect(tls.key.toString()).toContain('PRIVATE KEY');
  });

  it('refuses a missing file, naming it', () => {
    expect(() => loadServerTls({ ...pair, cert_file: join(dir, 'nope.crt') })).toThrow(`cannot read the TLS certificate ${join(dir, 'nope.crt')}: ENOENT`);
  });

  it('refuses a key every user can read', () => {
    chmodSync(pair.key_file, 0o644);
    try {
      expect(() => loadServerTls(pair)).toThrow(/readable by every user; run: chmod 600/);
    } finally {
      chmodSync(pair.key_file, 0o600);
    }
  });

  it('refuses files that are not PEM, without echoing their content', () => {
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'SECRET-CANARY not a certificate', { mode: 0o600 });
    const attempt = (): unknown => loadServerTls({ ...pair, cert_file: junk });
    expect(attempt).toThrow(`${junk} is not a PEM certificate`);
    try {
      attempt();
    } catch (err) {
      expect((err as Error).message).not.toContain('SECRET-CANARY');
    }
    expect(() => loadServerTls({ ...pair, key_file: junk })).toThrow(`${junk} is not a PEM private key`);
  });

  it('refuses a key from another pair', () => {
    const other = makeCerts({ outDir: join(dir, 'b'), hosts: ['ferry.example.org'] });
    expect(() => loadServerTls({ ...pair, key_file: other.serverKey })).toThrow(`the private key ${other.serverKey} does not belong to the certificate ${pair.cert_file}`);
  });
});

describe('config tls and the plaintext warning', () => {
  it('names the missing half of a tls pair by path', () => {
    const result = validateConfig({ tls: { cert_file: '/etc/ferry/server.crt' } });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.map((p) => p.path)).toEqual(['tls.key_file']);
  });

  it('warns for listeners on other addresses without TLS, not for loopback or TLS', () => {
    expect(plaintextListeners(config({}).config)).toEqual(['http 0.0.0.0:8080', 'grpc 0.0.0.0:50051']);
    expect(plaintextListeners(config({ http: { listen: '127.0.0.1:8080' }, grpc: { listen: '[::1]:50051' } }).config)).toEqual([]);
    expect(plaintextListeners(config({ http: { listen: '127.0.0.1:8080' }, grpc: { listen: '10.0.0.5:50051' } }).config)).toEqual(['grpc 10.0.0.5:50051']);
    expect(plaintextListeners(config({ tls: pair }).config)).toEqual([]);
  });
});

describe('packaging/control-plane.example.yaml', () => {
  it('is a valid config that serves TLS on every listener', () => {
    const example = config(parse(readFileSync(new URL('../packaging/control-plane.example.yaml', import.meta.url), 'utf8')) as Record<string, unknown>).config;
    expect(example.tls).toEqual({ cert_file: '/etc/ferry/tls/server.crt', key_file: '/etc/ferry/tls/server.key' });
    expect(plaintextListeners(example)).toEqual([]);
  });
});
