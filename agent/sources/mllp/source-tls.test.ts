// The mllp source over TLS and mutual TLS, end to end on real sockets. Certificates are made at test
// time with the openssl command line (needed on CI machines too).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { realisticMessage } from '../../../test/helpers/messages.js';
import { closesWithin, controlId, refusedCount, startSource, type Harness } from '../../../test/helpers/mllp-harness.js';
import { readAck } from './client.js';
import { frame } from './decoder.js';

let certDir = '';
const file = (name: string): string => join(certDir, name);
const pem = (name: string): Buffer => readFileSync(file(name));

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certDir, stdio: 'pipe' });
}

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
  // The listener's certificate: self-signed, for localhost / 127.0.0.1.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', 'server.key', '-out', 'server.crt');
  // The CA that signs sender certificates, and one sender certificate signed by it.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=Ferry test sender CA', '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', 'ca.key', '-out', 'ca.crt');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=sender', '-keyout', 'client.key', '-out', 'client.csr');
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'client.crt');
  // A sender certificate from nobody the listener trusts.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=stranger', '-days', '1', '-keyout', 'stranger.key', '-out', 'stranger.crt');
}, 30_000);

afterAll(() => {
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const trustServer = (): ConnectionOptions => ({ ca: pem('server.crt') });

/** Connects and sends one message: 'accepted' on AA, otherwise 'refused' (handshake or connection failure). */
async function attempt(harness: Harness, tls: ConnectionOptions, m: Buffer): Promise<'accepted' | 'refused'> {
  try {
    const c = await harness.client({ tls, responseTimeoutMs: 5000 });
    return readAck(await c.send(m)).code === 'AA' ? 'accepted' : 'refused';
  } catch {
    return 'refused';
  }
}

describe('TLS listener', () => {
  it('accepts MLLP over TLS end to end: pipelined frames answered in order, bytes stored as sent', async () => {
    h = await startSource({ source: { tls: { cert_file: file('server.crt'), key_file: file('server.key') } } });
    const c = await h.client({ tls: trustServer() });
    const messages = Array.from({ length: 20 }, (_, i) => realisticMessage('TLS', i));
    const acks = (await Promise.all(messages.map((m) => c.send(m)))).map(readAck);
    expect(acks).toEqual(messages.map((_, i) => ({ code: 'AA', controlId: controlId('TLS', i) })));
    const rows = await h.stored();
    expect(rows).toHaveLength(20);
    rows.forEach((r, i) => expect(r.payload.equals(messages[i]!)).toBe(true));
    // The sender saw the listener's certificate.
    const tlsSocket = c.raw as import('node:tls').TLSSocket;
    expect(tlsSocket.encrypted).toBe(true);
    expect(tlsSocket.getPeerCertificate().subject.CN).toBe('localhost');
  });

  it('refuses a plain-TCP sender on a TLS listener and stores nothing', async () => {
    h = await startSource({ source: { tls: { cert_file: file('server.crt'), key_file: file('server.key') } } });
    const s = await h.raw();
    s.on('error', () => {});
    s.write(frame(realisticMessage('PLAIN', 1)));
    expect(await closesWithin(s, 5000)).toBe(true);
    expect(await h.stored()).toHaveLength(0);
    expect(await refusedCount(h.metrics, 'tls')).toBe(1);
  });
});

describe('mutual TLS (require_client_cert + ca_file)', () => {
  const mtls = (): Record<string, unknown> => ({ tls: { cert_file: file('server.crt'), key_file: file('server.key'), ca_file: file('ca.crt'), require_client_cert: true } });

  it('refuses a sender without a certificate', async () => {
    h = await startSource({ source: mtls() });
    expect(await attempt(h, trustServer(), realisticMessage('NOCERT', 1))).toBe('refused');
    expect(await h.stored()).toHaveLength(0);
    expect(await refusedCount(h.metrics, 'tls')).toBe(1);
  });

  it('refuses a sender whose certificate is not signed by ca_file', async () => {
    h = await startSource({ source: mtls() });
    expect(await attempt(h, { ...trustServer(), cert: pem('stranger.crt'), key: pem('stranger.key') }, realisticMessage('STRANGER', 1))).toBe('refused');
    expect(await h.stored()).toHaveLength(0);
    expect(await refusedCount(h.metrics, 'tls')).toBe(1);
  });

  it('accepts a sender whose certificate is signed by ca_file', async () => {
    h = await startSource({ source: mtls() });
    const m = realisticMessage('CERTOK', 1);
    expect(await attempt(h, { ...trustServer(), cert: pem('client.crt'), key: pem('client.key') }, m)).toBe('accepted');
    const rows = await h.stored();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.payload.equals(m)).toBe(true);
    expect(await refusedCount(h.metrics, 'tls')).toBe(0);
  });
});
