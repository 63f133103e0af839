// `ferry-control-plane make-certs`: a private CA and a server certificate signed by it, for trials
// and for sites without their own PKI (DESIGN.md, security baseline). The control plane serves the
// server pair (config `tls`); agents trust ca.crt (`enroll --ca-file`, uplink.ca_file,
// fleet.ca_file). Made with the openssl command line, which Debian and RHEL servers carry; the
// keys are written owner-only and never pass through a command line or a log.

import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ControlPlaneError } from './errors.js';

export interface MakeCertsOptions {
  readonly outDir: string;
  /** DNS names and IP addresses agents use to reach the control plane (localhost and loopback are always added). */
  readonly hosts: readonly string[];
  /** Replace files already in outDir. */
  readonly force?: boolean;
  readonly caDays?: number;
  readonly serverDays?: number;
}

export interface MadeCerts {
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly names: readonly string[];
}

const FILES = ['ca.crt', 'ca.key', 'server.crt', 'server.key'] as const;

export function makeCerts(options: MakeCertsOptions): MadeCerts {
  const names = [...new Set([...options.hosts.map((h) => h.trim()).filter((h) => h !== ''), 'localhost', '127.0.0.1', '::1'])];
  for (const n of names) {
    if (isIP(n) === 0 && !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(n)) {
      throw new ControlPlaneError('tls_invalid', `"${n}" is neither a host name nor an IP address`);
    }
  }
  mkdirSync(options.outDir, { recursive: true, mode: 0o700 });
  const paths = Object.fromEntries(FILES.map((f) => [f, join(options.outDir, f)])) as Record<(typeof FILES)[number], string>;
  if (!options.force) {
    const existing = FILES.filter((f) => existsSync(paths[f]));
    if (existing.length > 0) throw new ControlPlaneError('tls_invalid', `${options.outDir} already holds ${existing.join(', ')}; use --force to replace them`);
  }
  const csr = join(options.outDir, 'server.csr');
  const ext = join(options.outDir, 'server.ext');
  const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
  // Keys are born owner-only: openssl creates them under this umask.
  const umask = process.umask(0o077);
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl(['req', '-x509', ...ec, '-subj', '/CN=Ferry private CA', '-days', String(options.caDays ?? 3650), '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', paths['ca.key'], '-out', paths['ca.crt']]);
    openssl(['req', ...ec, '-subj', `/CN=${names[0]}`, '-keyout', paths['server.key'], '-out', csr]);
    openssl(['x509', '-req', '-in', csr, '-CA', paths['ca.crt'], '-CAkey', paths['ca.key'], '-set_serial', `0x${Date.now().toString(16)}`, '-days', String(options.serverDays ?? 825), '-extfile', ext, '-out', paths['server.crt']]);
  } finally {
    process.umask(umask);
    rmSync(csr, { force: true });
    rmSync(ext, { force: true });
  }
  chmodSync(paths['ca.key'], 0o600);
  chmodSync(paths['server.key'], 0o600);
  chmodSync(paths['ca.crt'], 0o644);
  chmodSync(paths['server.crt'], 0o644);
  return { caCert: paths['ca.crt'], caKey: paths['ca.key'], serverCert: paths['server.crt'], serverKey: paths['server.key'], names };
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new ControlPlaneError('tls_invalid', 'make-certs needs the openssl command (Debian/Ubuntu: apt-get install openssl)', { cause: err });
    throw new ControlPlaneError('tls_invalid', `openssl ${args[0]} failed: ${e.stderr?.toString('utf8').trim().slice(0, 500) ?? e.message}`, { cause: err });
  }
}
