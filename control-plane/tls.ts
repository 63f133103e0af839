// The control plane's own TLS: one certificate and key (config `tls`) for the HTTP API and the gRPC
// ingest, and for the embedded MQTT broker unless `mqtt.tls` names another pair. Loaded and checked
// once at start, so a wrong path, a key that does not match its certificate or a key anyone can read
// stops the start with an answer that says which file and why, never with a handshake error later.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isLoopback } from '../proto/policy/index.js';
import { parseListen, type ControlPlaneConfig } from './config/index.js';
import { ControlPlaneError } from './errors.js';

export interface ServerTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** For the start-up line: who the certificate is for, and until when. */
  readonly subjectAltName: string;
  readonly validTo: string;
  /** validTo as milliseconds since the epoch. */
  readonly validToMs: number;
}

export function loadServerTls(files: { readonly cert_file: string; readonly key_file: string }): ServerTls {
  const cert = readTlsFile(files.cert_file, 'certificate');
  const key = readTlsFile(files.key_file, 'private key');
  // Group-readable is the Debian convention (ssl-cert group); readable by everyone is a leak.
  if ((statSync(files.key_file).mode & 0o004) !== 0) {
    throw new ControlPlaneError('tls_invalid', `TLS private key ${files.key_file} is readable by every user; run: chmod 600 ${files.key_file}`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (cause) {
    throw new ControlPlaneError('tls_invalid', `${files.cert_file} is not a PEM certificate`, { cause });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    throw new ControlPlaneError('tls_invalid', `${files.key_file} is not a PEM private key (or it is encrypted; Ferry needs it unencrypted, mode 0600)`, { cause });
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ControlPlaneError('tls_invalid', `the private key ${files.key_file} does not belong to the certificate ${files.cert_file}`);
  }
  const validToMs = Date.parse(x509.validTo);
  if (validToMs < Date.now()) {
    throw new ControlPlaneError('tls_invalid', `the certificate ${files.cert_file} expired on ${x509.validTo}`);
  }
  return { cert, key, subjectAltName: x509.subjectAltName ?? '', validTo: x509.validTo, validToMs };
}

function readTlsFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new ControlPlaneError('tls_invalid', `cannot read the TLS ${what} ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, { cause });
  }
}

/**
 * Listeners that serve plaintext to other machines. Agents never send to a control plane that is
 * not on their own machine without TLS, so such a listener only works behind a TLS-terminating
 * proxy: the start-up warning says so.
 */
export function plaintextListeners(config: ControlPlaneConfig): string[] {
  if (config.tls) return [];
  const open: string[] = [];
  for (const [name, listen] of [['http', config.http.listen], ['grpc', config.grpc.listen]] as const) {
    const host = parseListen(listen)?.host ?? '';
    if (!isLoopback(host)) open.push(`${name} ${listen}`);
  }
  return open;
}
