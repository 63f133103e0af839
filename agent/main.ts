#!/usr/bin/env node
// ferry-agent: the command line. Each subcommand validates its input whole before doing anything.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
// The running agent (gRPC, MQTT, HTTP, watchers) is loaded only by `run`: the offline commands start
// faster without it (import, check, status are run by hand and by scripts).
import type { Agent } from './agent.js';
import { agentPaths } from './paths.js';
import { Keyring, checkBuffer } from './buffer/index.js';
import { formatProblems, loadConfigFile, parseListen, validateConfig, type AgentConfig } from './config/index.js';
import { enroll, readEnrollmentToken } from './enroll/index.js';
import { FerryError } from './errors.js';
import { ackCodeFor, isSingleMessage, parseHeader, splitMessages } from './hl7/index.js';
import { frame } from './sources/mllp/decoder.js';
import { createLogger } from './log.js';
import { MllpClient, readAck } from './sources/mllp/client.js';
import { VERSION } from './version.js';
import { importCommand } from './import/index.js';

const USAGE = `ferry-agent ${VERSION}: HL7 v2 edge agent (MLLP in, encrypted store-and-forward buffer)

Usage:
  ferry-agent enroll --control-plane URL --token-file FILE [--config FILE | --data-dir DIR] [--name NAME] [--force]
                     [--ca-file FILE]
                                                       register with a control plane (token from FILE, - for stdin,
                                                       or FERRY_ENROLLMENT_TOKEN); keeps the credentials in DATA_DIR;
                                                       --ca-file: the CA of a private certificate (default: uplink.ca_file)
  ferry-agent run [--config FILE] [--data-dir DIR]     run the agent
  ferry-agent validate --config FILE                   check a config file; every problem is listed
  ferry-agent status [--config FILE] [--admin URL] [--json]
                                                       show a running agent's status
  ferry-agent check [--config FILE] [--data-dir DIR] [--json]
                                                       verify the buffer offline (integrity, decryption, hashes)
  ferry-agent rotate-key [--config FILE] [--data-dir DIR]
                                                       add a new data key and make it active
  ferry-agent send --to HOST:PORT FILE...              send HL7 files over MLLP and print each ACK
  ferry-agent import DIR --source ID [--include GLOB] [--dry-run] [--max-file-bytes SIZE] [--config FILE] [--data-dir DIR]
                                                       load a tree of HL7 files into the buffer (agent stopped;
                                                       resumable; files are left in place)
  ferry-agent version
`;

type Flags = Record<string, string | boolean | undefined>;

function parse(argv: string[]): { command: string | undefined; flags: Flags; positionals: string[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'data-dir': { type: 'string' },
      admin: { type: 'string' },
      to: { type: 'string' },
      'control-plane': { type: 'string' },
      'token-file': { type: 'string' },
      'ca-file': { type: 'string' },
      name: { type: 'string' },
      force: { type: 'boolean' },
      // import
      source: { type: 'string' },
      include: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'max-file-bytes': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  return { command: positionals[0], flags: values, positionals: positionals.slice(1) };
}

/** The config from --config (or defaults), with --data-dir applied over it. */
function resolveConfig(flags: Flags): AgentConfig {
  const file = typeof flags.config === 'string' ? flags.config : undefined;
  const result = file ? loadConfigFile(file) : validateConfig({});
  if (!result.ok) {
    throw new FerryError('config_invalid', `${file ?? 'configuration'} is invalid:\n${formatProblems(result.problems)}`);
  }
  const dataDir = flags['data-dir'];
  return typeof dataDir === 'string' ? { ...result.config, data_dir: dataDir } : result.config;
}

async function runCommand(flags: Flags): Promise<number> {
  let config = resolveConfig(flags);
  const log = createLogger(config.log_level);
  // One event at a time drives the loop: a signal ends it, a fleet `restart` command starts a new
  // agent in this same process (config file read again) — the same under systemd and `npm start`.
  let pending: 'signal' | 'restart' | undefined;
  let wake: (() => void) | undefined;
  const fire = (why: 'signal' | 'restart'): void => {
    if (pending !== 'signal') pending = why;
    wake?.();
  };
  let agent: Agent | undefined;
  let signalled = false;
  const shutdown = (signal: string): void => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      log.flush();
      process.exit(130);
    }
    signalled = true;
    log.info({ signal }, 'shutdown requested');
    fire('signal');
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      agent?.reloadKeys();
    } catch (err) {
      log.error({ err: errorFields(err) }, 'reloading the key file failed; still using the previous keys');
    }
  });
  for (;;) {
    try {
      const { Agent } = await import('./agent.js');
      agent = await Agent.start(config, log, { loadLocalConfig: () => resolveConfig(flags), requestRestart: () => fire('restart') });
    } catch (err) {
      log.fatal({ err: errorFields(err) }, 'agent failed to start');
      log.flush();
      return 1;
    }
    if (pending === undefined) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    const why = pending;
    pending = undefined;
    try {
      await agent.stop(why === 'restart' ? 'restart' : 'shutdown');
    } catch (err) {
      log.error({ err: errorFields(err) }, 'shutdown did not complete cleanly');
      if (why !== 'restart') return 1;
    }
    if (why !== 'restart') return 0;
    log.info('agent restarting in this process (fleet restart command)');
    try {
      config = resolveConfig(flags);
    } catch (err) {
      log.error({ err: errorFields(err) }, 'the config file is now invalid; restarting with the one read at the previous start');
    }
  }
}

async function enrollCommand(flags: Flags): Promise<number> {
  const url = flags['control-plane'];
  if (typeof url !== 'string') {
    process.stderr.write('enroll needs --control-plane URL and --token-file FILE (or - for standard input, or FERRY_ENROLLMENT_TOKEN)\n');
    return 2;
  }
  const config = resolveConfig(flags);
  // The CA that will verify the uplink verifies the enrollment too, unless --ca-file says otherwise.
  const caFile = typeof flags['ca-file'] === 'string' ? flags['ca-file'] : config.uplink.ca_file;
  const token = await readEnrollmentToken(typeof flags['token-file'] === 'string' ? flags['token-file'] : undefined, process.env);
  const result = await enroll({
    controlPlaneUrl: url,
    token,
    name: typeof flags.name === 'string' ? flags.name : hostname(),
    dataDir: config.data_dir,
    force: flags.force === true,
    ...(caFile !== undefined ? { caFile } : {}),
  });
  process.stdout.write(
    `enrolled as agent ${result.agentId}; credentials saved in ${result.credentialsFile} (mode 0600).\n` +
      `The agent delivers to ${result.grpcTarget} from its next start (ferry-agent run${typeof flags.config === 'string' ? ` --config ${flags.config}` : ''}).\n`,
  );
  return 0;
}

function validateCommand(flags: Flags): number {
  if (typeof flags.config !== 'string') {
    process.stderr.write('validate needs --config FILE\n');
    return 2;
  }
  const result = loadConfigFile(flags.config);
  if (!result.ok) {
    process.stderr.write(`${flags.config} is invalid (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}):\n${formatProblems(result.problems)}\n`);
    return 1;
  }
  const c = result.config;
  process.stdout.write(`${flags.config} is valid: data_dir ${c.data_dir}, ${c.sources.length} source(s): ${c.sources.map((s) => `${s.id} (${s.type} ${s.type === 'mllp' ? s.listen : s.path})`).join(', ') || 'none'}\n`);
  return 0;
}

async function statusCommand(flags: Flags): Promise<number> {
  let url: string;
  if (typeof flags.admin === 'string') {
    url = flags.admin.replace(/\/$/, '');
  } else {
    const listen = parseListen(resolveConfig(flags).admin.listen)!;
    const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    url = `http://${host}:${listen.port}`;
  }
  let body: Record<string, unknown>;
  try {
    const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(5000) });
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    process.stderr.write(`no agent answered at ${url}/status; is it running, and is admin.listen right?\n`);
    return 1;
  }
  if (flags.json) {
    process.stdout.write(JSON.stringify(body, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(formatStatus(body));
  return 0;
}

function formatStatus(s: Record<string, unknown>): string {
  const b = (s.buffer ?? {}) as Record<string, unknown>;
  const lines = [
    `ferry-agent ${String(s.version)}  ${String(s.state)}  up ${String(s.uptime_secs)}s`,
    `buffer ${String(b.buffer_id)}: ${String(b.depth)} messages, ${String(b.bytes)} of ${String(b.max_bytes)} bytes${b.full ? '  FULL: new messages are refused' : ''}`,
    `  oldest pending: ${b.oldest_pending_age_secs === null ? '-' : `${Math.round(Number(b.oldest_pending_age_secs))}s`}, last seq ${String(b.last_seq)}`,
  ];
  const u = s.uplink as Record<string, unknown> | undefined;
  if (u) {
    const err = u.last_error as { code: string; message: string } | null;
    lines.push(
      `uplink: ${String(u.state)}${u.target ? ` to ${String(u.target)}` : ''}; committed seq ${u.committed_seq === null ? '-' : String(u.committed_seq)}, last ack ${u.last_ack_at === null ? '-' : String(u.last_ack_at)}${err ? `; last error: ${err.code}: ${err.message}` : ''}`,
    );
    if (u.state === 'disabled') lines.push(`  ${String(u.message)}`);
  }
  for (const src of (s.sources ?? []) as Record<string, unknown>[]) lines.push(formatSource(src));
  lines.push(...formatFleet(s.fleet as Record<string, unknown> | undefined));
  return lines.join('\n') + '\n';
}

/** One line per source, with the counters its type has (MLLP: connections, acks; file_drop: files). */
function formatSource(src: Record<string, unknown>): string {
  const h = src.health as Record<string, string>;
  const c = src.counters as Record<string, unknown>;
  const lastError = c.lastError ? `; last error: ${String(c.lastError)}` : '';
  if (src.type === 'file_drop') {
    const n = (key: string): string => String(c[key] ?? 0);
    return (
      `source ${String(src.id)} (file_drop ${String(src.path)}): ${h.state}${c.paused ? ' (paused: buffer full)' : ''}; ` +
      `${n('filesSeen')} files seen, ${n('filesTaken')} taken, ${n('filesArchived')} archived, ${n('filesDeleted')} deleted, ${n('filesErrored')} errored, ${n('filesRefused')} refused, ` +
      `${n('filesDuplicate')} duplicates, ${n('pending')} pending; ${n('messages')} messages${lastError}`
    );
  }
  const l = src.listen as { host: string; port: number } | null;
  return `source ${String(src.id)} (${String(src.type)}${l ? ` ${l.host}:${l.port}` : ''}): ${h.state}; ${String(c.connections)} connections, ${String(c.messagesAcked)} acked, ${String(c.framesRejected)} refused, ${String(c.duplicates)} duplicates${lastError}`;
}

/** The fleet block: connection, broker, applied policy, and each part of the policy that did not apply. */
function formatFleet(f: Record<string, unknown> | undefined): string[] {
  if (!f) return [];
  const err = f.last_error as { code: string; message: string } | null | undefined;
  const lines =
    f.state === 'disabled'
      ? [`fleet: off: ${String(f.message)}`]
      : [`fleet: ${String(f.state)} (broker ${String(f.broker)}, ${String(f.protocol)}) since ${String(f.since)}${err ? `; last error: ${err.code}: ${err.message}` : ''}`];
  const p = f.policy as { policy_id: string | null; applied_version: number | null; received_version: number | null; state: string; errors: { path: string; message: string }[] } | undefined;
  if (!p || p.state === 'none') {
    lines.push('  policy: none applied (running the local config file)');
    return lines;
  }
  const received = p.received_version !== null && p.received_version !== p.applied_version ? `, received v${p.received_version}` : '';
  lines.push(`  policy ${String(p.policy_id)}: v${p.applied_version ?? '-'} applied${received}; ${p.state}`);
  for (const e of p.errors) lines.push(`    ${e.path}: ${e.message}`);
  return lines;
}

async function checkCommand(flags: Flags): Promise<number> {
  const paths = agentPaths(resolveConfig(flags));
  const report = await checkBuffer(paths.bufferFile, Keyring.load(paths.keyFile));
  if (flags.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    process.stdout.write(`sqlite integrity: ${report.sqliteIntegrity}\nrows checked: ${report.rows}\nfailures: ${report.failures.length}\n`);
    for (const f of report.failures) process.stdout.write(`  seq ${f.seq}: ${f.reason}\n`);
    process.stdout.write(report.ok ? 'buffer OK\n' : 'buffer has problems (see above)\n');
  }
  return report.ok ? 0 : 1;
}

function rotateKeyCommand(flags: Flags): number {
  const paths = agentPaths(resolveConfig(flags));
  Keyring.load(paths.keyFile); // refuse to touch a file with bad permissions or content
  const keyring = Keyring.rotate(paths.keyFile);
  process.stdout.write(
    `new active key ${keyring.activeKeyId} in ${paths.keyFile} (${keyring.keyIds.length} keys; older rows stay readable).\n` +
      'A running agent picks it up on SIGHUP or restart.\n',
  );
  return 0;
}

async function sendCommand(flags: Flags, files: string[]): Promise<number> {
  const to = typeof flags.to === 'string' ? parseListen(flags.to) : undefined;
  if (!to || files.length === 0) {
    process.stderr.write('send needs --to HOST:PORT and at least one FILE\n');
    return 2;
  }
  const client = await MllpClient.connect({ host: to.host, port: to.port });
  let failures = 0;
  try {
    for (const file of files) {
      const bytes = readFileSync(file);
      const bodies = isSingleMessage(bytes) ? [bytes] : splitMessages(bytes).messages.map((s) => bytes.subarray(s.start, s.end));
      for (const body of bodies) {
        const header = parseHeader(body).header;
        if (header && ackCodeFor(header, 'accepted') === null) {
          // An ACK, or MSH-15 NE/ER: a successful delivery gets no response by the HL7 rules.
          client.writeRaw(frame(body));
          process.stdout.write(`${file}: sent ${header.controlId} (no acknowledgement expected: ${header.messageType === 'ACK' ? 'it is an ACK' : `MSH-15 is ${header.acceptAckType}`})\n`);
          continue;
        }
        const ack = readAck(await client.send(body));
        if (ack.code !== 'AA' && ack.code !== 'CA') failures++;
        process.stdout.write(`${file}: ${ack.code} ${ack.controlId}${ack.errorCode ? ` (ERR ${ack.errorCode})` : ''}\n`);
      }
    }
  } finally {
    await client.close();
  }
  return failures === 0 ? 0 : 1;
}

function errorFields(err: unknown): object {
  if (err instanceof FerryError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { message: err.message, code: (err as NodeJS.ErrnoException).code };
  return { message: String(err) };
}

async function main(argv: string[]): Promise<number> {
  const { command, flags, positionals } = parse(argv);
  if (flags.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !flags.help ? 2 : 0;
  }
  switch (command) {
    case 'run':
      return runCommand(flags);
    case 'enroll':
      return enrollCommand(flags);
    case 'validate':
      return validateCommand(flags);
    case 'status':
      return statusCommand(flags);
    case 'check':
      return checkCommand(flags);
    case 'rotate-key':
      return rotateKeyCommand(flags);
    case 'import':
      return importCommand({
        dir: positionals[0],
        sourceId: typeof flags.source === 'string' ? flags.source : undefined,
        include: typeof flags.include === 'string' ? flags.include : undefined,
        dryRun: flags['dry-run'] === true,
        maxFileBytes: typeof flags['max-file-bytes'] === 'string' ? flags['max-file-bytes'] : undefined,
        config: resolveConfig(flags),
        stdout: process.stdout,
        stderr: process.stderr,
      });
    case 'send':
      return sendCommand(flags, positionals);
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ferry-agent: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
