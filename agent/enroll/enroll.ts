// `ferry-agent enroll`: trade a one-time enrollment token for this agent's id and secret
// (POST {url}/api/v1/agents/enroll), then keep them in DATA_DIR/credentials.json (0600).
// Neither the token nor the secret is ever printed, logged, or put in an error message.

import { mkdirSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isUntrustedCertificateCode } from '../certificate-errors.js';
import { FerryError } from '../errors.js';
import { readCredentials, writeCredentials, credentialsPath, type AgentCredentials } from './credentials.js';

export const ENROLL_PATH = '/api/v1/agents/enroll';
/** The control plane's gRPC port when its answer does not name one (DESIGN.md). */
export const DEFAULT_GRPC_PORT = 50051;

export interface EnrollOptions {
  readonly controlPlaneUrl: string;
  readonly token: string;
  /** How the agent is listed on the control plane (default: the host name). */
  readonly name: string;
  readonly dataDir: string;
  /** Replace existing credentials. */
  readonly force?: boolean;
  readonly timeoutMs?: number;
  /** PEM CA bundle that signed the control plane's certificate (a private CA); default: the system roots. */
  readonly caFile?: string;
}

export interface EnrollResult {
  readonly agentId: string;
  readonly credentialsFile: string;
  readonly grpcTarget: string;
}

/** Answers the control plane gives a refused enrollment, in words an operator can act on. */
const REFUSALS: Record<number, string> = {
  400: 'the control plane rejected the request',
  401: 'the enrollment token was not accepted (unknown or revoked)',
  403: 'the enrollment token may not enroll agents',
  404: 'no enrollment endpoint at this URL; check --control-plane',
  410: 'the enrollment token has expired or has been used up; ask for a new one',
};

export async function enroll(options: EnrollOptions): Promise<EnrollResult> {
  let base: URL;
  try {
    base = new URL(options.controlPlaneUrl);
  } catch {
    throw new FerryError('enroll_failed', `--control-plane must be a URL such as https://ferry.example.org:8080 (got "${options.controlPlaneUrl}")`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new FerryError('enroll_failed', `--control-plane must be an http:// or https:// URL`);
  const token = options.token.trim();
  if (token.length === 0) throw new FerryError('enroll_failed', 'the enrollment token is empty');
  // Refuse before spending the token: it may allow a single use.
  if (!options.force && readCredentialsQuietly(options.dataDir)) {
    throw new FerryError('credentials_exist', `${credentialsPath(options.dataDir)} already exists: this agent is enrolled. Use --force to replace its credentials`);
  }
  let ca: Buffer | undefined;
  if (options.caFile !== undefined) {
    try {
      ca = readFileSync(options.caFile);
    } catch (cause) {
      throw new FerryError('enroll_failed', `cannot read the CA file ${options.caFile}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, { cause });
    }
  }
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });

  // A control plane behind a path prefix (https://host/ferry) keeps it.
  const endpoint = new URL(base.pathname.replace(/\/$/, '') + ENROLL_PATH, base);
  let res: PostAnswer;
  try {
    res = await postJson(endpoint, JSON.stringify({ token, name: options.name }), ca, options.timeoutMs ?? 15_000);
  } catch (cause) {
    const code = causeCode(cause);
    // A certificate the agent cannot verify fails before the request is sent: the token is not spent.
    const untrusted = isUntrustedCertificateCode(code);
    const hint = untrusted
      ? `the control plane's certificate is not trusted${ca ? ` by ${options.caFile}` : ''}; pass --ca-file with the CA that signed it (ferry-control-plane make-certs writes it as ca.crt), and use the host name the certificate names`
      : 'check the URL, that it is running, and the network path';
    throw new FerryError('enroll_unreachable', `cannot reach the control plane at ${base.origin}${code ? ` (${code})` : ''}; ${hint}`, { cause });
  }
  const text = res.text;
  let body: unknown;
  try {
    body = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (res.status < 200 || res.status > 299) {
    const err = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const detail = typeof err?.message === 'string' ? err.message.slice(0, 500) : (REFUSALS[res.status] ?? `HTTP ${res.status}`);
    const code = typeof err?.code === 'string' ? ` ${err.code.slice(0, 64)}` : '';
    const refused = res.status === 401 || res.status === 403 || res.status === 404 || res.status === 410;
    throw new FerryError(refused ? 'enroll_refused' : 'enroll_failed', `enrollment refused by ${base.origin} (HTTP ${res.status}${code}): ${detail}`);
  }
  const answer = body as { agent_id?: unknown; secret?: unknown; grpc_target?: unknown; mqtt_url?: unknown } | undefined;
  if (typeof answer?.agent_id !== 'string' || answer.agent_id === '' || typeof answer.secret !== 'string' || answer.secret === '') {
    throw new FerryError('enroll_failed', `the control plane at ${base.origin} answered without an agent id and secret; is it a Ferry control plane?`);
  }
  const grpcTarget = typeof answer.grpc_target === 'string' && answer.grpc_target !== '' ? answer.grpc_target : `${hostForTarget(base.hostname)}:${DEFAULT_GRPC_PORT}`;
  const credentials: AgentCredentials = {
    agent_id: answer.agent_id,
    secret: answer.secret,
    control_plane_url: base.toString().replace(/\/$/, ''),
    grpc_target: grpcTarget,
    enrolled_at: new Date().toISOString(),
    // The fleet broker, when the control plane runs one; an agent without it runs without a fleet client.
    ...(typeof answer.mqtt_url === 'string' && answer.mqtt_url !== '' ? { mqtt_url: answer.mqtt_url } : {}),
  };
  const file = writeCredentials(options.dataDir, credentials, { force: options.force === true });
  return { agentId: credentials.agent_id, credentialsFile: file, grpcTarget };
}

interface PostAnswer {
  readonly status: number;
  readonly text: string;
}

/** Largest enrollment answer read: it is a few hundred bytes; anything far bigger is not Ferry. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** POST a JSON body; node:http(s) rather than fetch, which cannot be given a CA of its own. */
function postJson(url: URL, body: string, ca: Buffer | undefined, timeoutMs: number): Promise<PostAnswer> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
        ...(ca ? { ca } : {}),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) res.destroy(new FerryError('enroll_failed', 'the answer is too large to be an enrollment answer'));
          else chunks.push(chunk);
        });
        res.once('error', reject);
        res.once('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.once('timeout', () => req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })));
    req.once('error', reject);
    req.end(body);
  });
}

function readCredentialsQuietly(dataDir: string): boolean {
  try {
    return readCredentials(dataDir) !== undefined;
  } catch {
    return true; // a file is there, even if unreadable: do not replace it without --force
  }
}

function hostForTarget(hostname: string): string {
  return hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
}

function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    if ((e as { name?: unknown }).name === 'TimeoutError') return 'timed out';
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
