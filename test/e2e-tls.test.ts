// The control plane over TLS, across real processes, the way a site without its own PKI would set
// it up: `ferry-control-plane make-certs` makes a private CA and a server pair; the control plane
// serves HTTPS, gRPC over TLS and MQTT over TLS with it (config `tls`); an agent that does not
// trust the CA is refused before its one-use token is spent; with `--ca-file` it enrolls, and with
// uplink.ca_file / fleet.ca_file it delivers a message byte for byte and joins the fleet bus.

import { execFileSync, spawnSync } from 'node:child_process';
import { request } from 'node:https';
import { request as plainRequest } from 'node:http';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { startAgent, writeAgentConfig, type RunningAgent } from './helpers/agent-process.js';
import { adminToken, CONTROL_PLANE_MAIN, runEnroll, startControlPlane, type ControlPlaneProcess, type StoredMessageMeta } from './helpers/control-plane-process.js';
import { agentOptions, cleanUpProcesses, waitDrained, waitFor } from './helpers/e2e.js';
import { readSample } from './helpers/samples.js';

let dir: string | undefined;
let agent: RunningAgent | undefined;
let cp: ControlPlaneProcess | undefined;

afterEach(async () => {
  await cleanUpProcesses(agent, cp, dir);
  agent = cp = dir = undefined;
});

function makeCerts(out: string, ...hosts: string[]): string {
  return execFileSync(process.execPath, [CONTROL_PLANE_MAIN, 'make-certs', '--out', out, ...hosts.flatMap((h) => ['--host', h])], { encoding: 'utf8' });
}

/** One HTTPS request trusting only `ca`; resolves with status and body. */
function httpsRequest(url: string, ca: Buffer, options: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = request(
      url,
      {
        method: options.method ?? 'GET',
        ca,
        headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** One corpus message over MLLP to the agent; it must be answered AA (stored, whatever the uplink does). */
async function sendSample(port: number): Promise<Buffer> {
  const sample = readSample('adt-a01_v2.4_hapi-docs.hl7');
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 15_000 });
  try {
    expect(readAck(await client.send(sample)).code).toBe('AA');
  } finally {
    await client.close();
  }
  return sample;
}

describe('control plane over TLS with a private CA (make-certs)', () => {
  it('serves HTTPS, gRPC and MQTT over TLS; an agent that trusts the CA enrolls, delivers byte for byte and joins the fleet bus', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
    const tlsDir = join(dir, 'tls');
    const out = makeCerts(tlsDir, 'localhost');
    expect(out).toContain('cert_file:');
    for (const key of ['ca.key', 'server.key']) expect(statSync(join(tlsDir, key)).mode & 0o777, key).toBe(0o600);
    const ca = readFileSync(join(tlsDir, 'ca.crt'));
    const serverCert = new X509Certificate(readFileSync(join(tlsDir, 'server.crt')));
    expect(serverCert.subjectAltName).toContain('DNS:localhost');
    expect(serverCert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(serverCert.verify(new X509Certificate(ca).publicKey)).toBe(true);
    // The keys never reach the output (it prints paths and config, not secrets).
    expect(out).not.toContain('PRIVATE KEY');

    const cpConfig = join(dir, 'cp.yaml');
    writeFileSync(cpConfig, `tls:\n  cert_file: ${join(tlsDir, 'server.crt')}\n  key_file: ${join(tlsDir, 'server.key')}\n`);
    cp = await startControlPlane({ dataDir: join(dir, 'cp'), configFile: cpConfig });
    const started = cp.lines.map((l) => JSON.parse(l) as { msg?: string; tls?: unknown; mqtt?: { tls?: boolean } }).find((l) => l.msg === 'control plane started')!;
    expect(started.tls).toMatchObject({ subject_alt_name: expect.stringContaining('DNS:localhost') as unknown });
    expect(started.mqtt?.tls).toBe(true);
    const base = `https://localhost:${cp.httpPort}`;
    expect((await httpsRequest(`${base}/livez`, ca)).status).toBe(200);
    // Ops see the renewal coming: the certificate's expiry is a metric.
    const metrics = (await httpsRequest(`${base}/metrics`, ca)).body.toString();
    expect(metrics).toContain(`ferry_cp_tls_cert_expiry_timestamp_seconds ${Math.floor(Date.parse(serverCert.validTo) / 1000)}`);
    // Plain HTTP to the TLS port gets no API answer.
    const plain = await new Promise<number | string>((resolve) => {
      const req = plainRequest(`http://127.0.0.1:${cp!.httpPort}/livez`, (res) => resolve(res.statusCode ?? 0));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end();
    });
    expect(plain).not.toBe(200);

    const admin = adminToken(cp.dataDir);
    const created = await httpsRequest(`${base}/api/v1/enrollment-tokens`, ca, { method: 'POST', token: admin, body: { max_uses: 1 } });
    expect(created.status).toBe(201);
    const { token } = JSON.parse(created.body.toString()) as { token: string };

    const caFile = join(tlsDir, 'ca.crt');
    const options = agentOptions(join(dir, 'agent'), [{ id: 'lab', type: 'mllp', listen: '127.0.0.1:0' }], { ca_file: caFile });
    const config = options.config as { uplink: Record<string, unknown> };
    const untrusting = writeAgentConfig({ ...options, config: { ...config, uplink: { ...config.uplink, ca_file: undefined } } });
    // Without the CA: refused with a reason an operator can act on, and the token is not spent.
    const refused = await runEnroll(base, token, untrusting);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not trusted.*--ca-file/);
    expect(refused.stderr).not.toContain(token);

    const configPath = writeAgentConfig({ ...options, config: { ...config, fleet: { ca_file: caFile } } });
    const enrolled = await runEnroll(base, token, configPath, 'tls-agent', ['--ca-file', caFile]);
    expect(enrolled.stderr).toBe('');
    expect(enrolled.code).toBe(0);
    const creds = JSON.parse(readFileSync(join(options.dir, 'data', 'credentials.json'), 'utf8')) as { control_plane_url: string; mqtt_url: string };
    expect(creds.control_plane_url).toBe(base);
    expect(creds.mqtt_url).toMatch(/^mqtts:\/\/localhost:\d+$/);

    agent = await startAgent({ ...options, config: { ...config, fleet: { ca_file: caFile } } });
    const sample = await sendSample(agent.mllpPorts.lab!);
    await waitDrained(agent.adminPort, 20_000);
    const status = (await (await fetch(`http://127.0.0.1:${agent.adminPort}/status`)).json()) as { uplink: { tls: boolean; state: string }; fleet: { state: string } };
    expect(status.uplink).toMatchObject({ tls: true, state: 'connected' });
    await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${agent!.adminPort}/status`)).json()) as { fleet: { state: string } }).fleet.state === 'connected', 15_000, 'the fleet client to connect over mqtts');

    const list = await httpsRequest(`${base}/api/v1/messages?limit=10`, ca, { token: admin });
    expect(list.status).toBe(200);
    const items = (JSON.parse(list.body.toString()) as { items: StoredMessageMeta[] }).items;
    expect(items).toHaveLength(1);
    const payload = await httpsRequest(`${base}/api/v1/messages/${encodeURIComponent(items[0]!.id)}/payload`, ca, { token: admin });
    expect(payload.status).toBe(200);
    expect(payload.body.equals(sample)).toBe(true);
  });

  it('an agent that does not trust the uplink certificate keeps accepting and says what to set', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
    const tlsDir = join(dir, 'tls');
    makeCerts(tlsDir, 'localhost');
    const caFile = join(tlsDir, 'ca.crt');
    const cpConfig = join(dir, 'cp.yaml');
    writeFileSync(cpConfig, `tls:\n  cert_file: ${join(tlsDir, 'server.crt')}\n  key_file: ${join(tlsDir, 'server.key')}\n`);
    cp = await startControlPlane({ dataDir: join(dir, 'cp'), configFile: cpConfig });
    const base = `https://localhost:${cp.httpPort}`;
    const created = await httpsRequest(`${base}/api/v1/enrollment-tokens`, readFileSync(caFile), { method: 'POST', token: adminToken(cp.dataDir), body: {} });
    const { token } = JSON.parse(created.body.toString()) as { token: string };
    // Enrolled with the CA on the command line, but uplink.ca_file left out of agent.yaml.
    const options = agentOptions(join(dir, 'agent'), [{ id: 'lab', type: 'mllp', listen: '127.0.0.1:0' }]);
    const configPath = writeAgentConfig(options);
    expect((await runEnroll(base, token, configPath, 'no-ca', ['--ca-file', caFile])).code).toBe(0);
    agent = await startAgent(options);
    await sendSample(agent.mllpPorts.lab!);
    let uplink: { state: string; message: string; pending: { count: number } } | undefined;
    await waitFor(
      async () => {
        uplink = ((await (await fetch(`http://127.0.0.1:${agent!.adminPort}/status`)).json()) as { uplink: typeof uplink }).uplink;
        return uplink!.message.includes('uplink.ca_file');
      },
      15_000,
      'the uplink status to name uplink.ca_file',
    );
    expect(uplink).toMatchObject({ state: 'disconnected', pending: { count: 1 } });
    expect(agent.lines.some((l) => l.includes('"level":"error"') && l.includes('set uplink.ca_file'))).toBe(true);
    // fleet.ca_file is not set either: the fleet client says so too.
    await waitFor(
      async () => {
        const fleet = ((await (await fetch(`http://127.0.0.1:${agent!.adminPort}/status`)).json()) as { fleet: { last_error: { message: string } | null } }).fleet;
        return fleet.last_error?.message.includes('set fleet.ca_file') === true;
      },
      15_000,
      'the fleet status to name fleet.ca_file',
    );
  });

  it('refuses to start when the key does not belong to the certificate, naming both files', () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
    makeCerts(join(dir, 'a'), 'localhost');
    makeCerts(join(dir, 'b'), 'localhost');
    const cpConfig = join(dir, 'cp.yaml');
    writeFileSync(cpConfig, `tls:\n  cert_file: ${join(dir, 'a', 'server.crt')}\n  key_file: ${join(dir, 'b', 'server.key')}\n`);
    const run = spawnSync(process.execPath, [CONTROL_PLANE_MAIN, 'serve', '--config', cpConfig, '--data-dir', join(dir, 'cp'), '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(1);
    const out = run.stdout + run.stderr;
    expect(out).toContain('does not belong to the certificate');
    expect(out).toContain(join(dir, 'b', 'server.key'));
    expect(out).not.toContain('PRIVATE KEY');
  });

  it('make-certs refuses to overwrite an existing CA without --force', () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
    makeCerts(join(dir, 'a'), 'ferry.example.org', '10.1.2.3');
    const before = readFileSync(join(dir, 'a', 'ca.key'));
    const again = spawnSync(process.execPath, [CONTROL_PLANE_MAIN, 'make-certs', '--out', join(dir, 'a')], { encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('--force');
    expect(readFileSync(join(dir, 'a', 'ca.key')).equals(before)).toBe(true);
    const san = new X509Certificate(readFileSync(join(dir, 'a', 'server.crt'))).subjectAltName;
    expect(san).toContain('DNS:ferry.example.org');
    expect(san).toContain('IP Address:10.1.2.3');
  });
});
