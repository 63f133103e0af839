#!/usr/bin/env node
// ferry-control-plane: the command line. `serve` runs the store, the HTTP API and the gRPC ingest in
// one process; `validate` checks a config file without starting anything.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { makeCerts } from './certs.js';
import { formatProblems, loadConfigFile, parseListen, validateConfig, type ControlPlaneConfig } from './config/index.js';
import { createLogger } from './log.js';
import { ControlPlane } from './control-plane.js';

const VERSION = '0.1.0';

const USAGE = `ferry-control-plane ${VERSION}: the Ferry control plane (HTTP API, gRPC ingest, MQTT fleet bus, message store)

Usage:
  ferry-control-plane serve [--config FILE] [--data-dir DIR] [--http-port 8080] [--grpc-port 50051]
                            [--mqtt-port 1883 | --mqtt-url URL]
  ferry-control-plane validate --config FILE     check a config file; every problem is listed
  ferry-control-plane make-certs --out DIR [--host NAME]... [--force]
                                                 a private CA and a server certificate for it (TLS
                                                 for HTTP, gRPC and MQTT); --host: each DNS name or IP
                                                 agents use to reach this machine (default: its host name)
  ferry-control-plane version
`;

type Flags = Record<string, string | boolean | string[] | undefined>;

class UsageError extends Error {}

function parse(argv: string[]): { command: string | undefined; flags: Flags } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'data-dir': { type: 'string' },
        'http-port': { type: 'string' },
        'grpc-port': { type: 'string' },
        'mqtt-port': { type: 'string' },
        'mqtt-url': { type: 'string' },
        out: { type: 'string' },
        host: { type: 'string', multiple: true },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    return { command: positionals[0], flags: values };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function port(flags: Flags, name: string): number | undefined {
  const v = flags[name];
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n > 65535) throw new UsageError(`--${name} must be a port number 0-65535`);
  return n;
}

function withPort(listen: string, p: number | undefined): string {
  if (p === undefined) return listen;
  const host = parseListen(listen)?.host ?? '0.0.0.0';
  return `${host.includes(':') ? `[${host}]` : host}:${p}`;
}

/** The file (or the defaults), then the flags over it. */
export function resolveConfig(flags: Flags): ControlPlaneConfig {
  const file = typeof flags.config === 'string' ? flags.config : undefined;
  const result = file ? loadConfigFile(file) : validateConfig({});
  if (!result.ok) throw new UsageError(`${file ?? 'configuration'} is invalid:\n${formatProblems(result.problems)}`);
  const c = result.config;
  if (flags['mqtt-port'] !== undefined && flags['mqtt-url'] !== undefined) throw new UsageError('--mqtt-port and --mqtt-url exclude each other');
  const mqttPort = port(flags, 'mqtt-port');
  return {
    ...c,
    data_dir: typeof flags['data-dir'] === 'string' ? flags['data-dir'] : c.data_dir,
    http: { listen: withPort(c.http.listen, port(flags, 'http-port')) },
    grpc: { listen: withPort(c.grpc.listen, port(flags, 'grpc-port')) },
    mqtt: mqttFromFlags(c.mqtt, typeof flags['mqtt-url'] === 'string' ? flags['mqtt-url'] : undefined, mqttPort),
  };
}

/** --mqtt-url switches to an external broker (keeping the file's credentials); --mqtt-port moves the embedded one. */
function mqttFromFlags(mqtt: ControlPlaneConfig['mqtt'], url: string | undefined, mqttPort: number | undefined): ControlPlaneConfig['mqtt'] {
  if (url !== undefined) {
    if (!/^(mqtts?|wss?):\/\/\S+$/.test(url)) throw new UsageError('--mqtt-url must be an mqtt://, mqtts://, ws:// or wss:// URL');
    if (/^[a-z]+:\/\/[^/]*@/i.test(url)) throw new UsageError('--mqtt-url must not carry credentials (a command line is visible to ps); set mqtt.username and mqtt.password_file in the config file');
    const { listen: _listen, tls: _tls, max_packet_bytes: _max, connect_timeout_secs: _timeout, ...external } = mqtt;
    return { ...external, url };
  }
  if (mqttPort === undefined) return mqtt;
  if (mqtt.url !== undefined) throw new UsageError('--mqtt-port sets the embedded broker\'s port, but the config file sets mqtt.url (an external broker)');
  return { ...mqtt, listen: withPort(mqtt.listen ?? '0.0.0.0:1883', mqttPort) };
}

async function serveCommand(flags: Flags): Promise<number> {
  const config = resolveConfig(flags);
  const log = createLogger(config.log_level);
  let cp: ControlPlane;
  try {
    cp = await ControlPlane.start(config, { log, version: VERSION });
  } catch (err) {
    log.fatal({ err: { name: (err as Error).name, code: (err as { code?: unknown }).code, message: (err as Error).message } }, 'control plane failed to start');
    log.flush();
    return 1;
  }
  return new Promise<number>((resolve) => {
    let signalled = false;
    const shutdown = (signal: string): void => {
      if (signalled) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        log.flush();
        process.exit(130);
      }
      signalled = true;
      log.info({ signal }, 'shutdown requested');
      cp.stop().then(
        () => {
          log.flush();
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err: { message: (err as Error).message } }, 'shutdown did not complete cleanly');
          log.flush();
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
  });
}

function validateCommand(flags: Flags): number {
  if (typeof flags.config !== 'string') throw new UsageError('validate needs --config FILE');
  const result = loadConfigFile(flags.config);
  if (!result.ok) {
    process.stderr.write(`${flags.config} is invalid (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}):\n${formatProblems(result.problems)}\n`);
    return 1;
  }
  const c = result.config;
  const mqtt = c.mqtt.url !== undefined ? `external broker ${c.mqtt.url}` : `embedded broker on ${c.mqtt.listen ?? '0.0.0.0:1883'}`;
  process.stdout.write(`${flags.config} is valid: data_dir ${c.data_dir}, http ${c.http.listen}, grpc ${c.grpc.listen}, mqtt ${mqtt}\n`);
  return 0;
}

function makeCertsCommand(flags: Flags): number {
  if (typeof flags.out !== 'string') throw new UsageError('make-certs needs --out DIR');
  const hosts = Array.isArray(flags.host) && flags.host.length > 0 ? flags.host : [hostname()];
  const made = makeCerts({ outDir: flags.out, hosts, force: flags.force === true });
  const at = (p: string): string => resolve(p);
  process.stdout.write(
    `Made a private CA and a server certificate for ${made.names.join(', ')} in ${at(flags.out)}:\n` +
      `  ${at(made.caCert)}      the CA: give it to every agent\n` +
      `  ${at(made.caKey)}      the CA's key (mode 0600): keep it off the network; it signs certificates\n` +
      `  ${at(made.serverCert)}  and ${at(made.serverKey)} (mode 0600): this control plane's pair\n\n` +
      `Control plane config (HTTP, gRPC and the embedded MQTT broker):\n` +
      `  tls:\n    cert_file: ${at(made.serverCert)}\n    key_file: ${at(made.serverKey)}\n\n` +
      `On each agent machine, with ca.crt copied there:\n` +
      `  ferry-agent enroll --control-plane https://${made.names[0]}:8080 --token-file FILE --ca-file /etc/ferry/ca.crt\n` +
      `  and in agent.yaml: uplink.ca_file and fleet.ca_file: /etc/ferry/ca.crt\n`,
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  try {
    const { command, flags } = parse(argv);
    if (flags.help || command === undefined || command === 'help') {
      process.stdout.write(USAGE);
      return command === undefined && !flags.help ? 2 : 0;
    }
    switch (command) {
      case 'serve':
        return await serveCommand(flags);
      case 'validate':
        return validateCommand(flags);
      case 'make-certs':
        return makeCertsCommand(flags);
      case 'version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ferry-control-plane: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ferry-control-plane: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
