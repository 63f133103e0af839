// Makes an external Mosquitto enforce Ferry's per-agent rules with its own file-based auth: a
// password file (every enrolled, non-revoked agent with its `$7$` hash, plus the control plane's
// own user) and an ACL file (each agent reads its policy and commands and writes its status,
// telemetry and command results, nothing else; the control plane reads and writes every agent's
// topics). Both are rewritten atomically (temp file, fsync, rename; mode 0600) at start and after
// each enrollment and revocation, then Mosquitto is told to reload (SIGHUP to pid_file's pid).
// With `use_username_as_clientid true` in mosquitto.conf no client can pass as another agent.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { AGENT_TOPICS, FLEET_TOPIC_ROOT } from '../../../proto/fleet/index.js';
import type { Logger } from '../../log.js';
import { mosquittoPasswordHash, type BrokerCredential, type MessageStore } from '../../store/index.js';

export interface MosquittoFilesOptions {
  readonly passwordFile: string;
  readonly aclFile: string;
  readonly pidFile: string | undefined;
  /** The control plane's own MQTT user and the file holding its password. */
  readonly controlPlaneUser: string;
  readonly controlPlanePasswordFile: string;
}

/** The ACL file: pattern rules (%u = the connecting username = the agent id), then the control plane's user. */
export function mosquittoAcl(controlPlaneUser: string): string {
  const mine = `${FLEET_TOPIC_ROOT}/%u`;
  return [
    '# Written by the Ferry control plane (mqtt.mosquitto.acl_file); rewritten at start and on every enrollment/revocation.',
    '# Each agent: read its policy and commands, write its status, telemetry and command results. Nothing else:',
    '# no wildcards beyond its own topics, no $SYS, no other agent.',
    `pattern read ${mine}/${AGENT_TOPICS.policy}`,
    `pattern read ${mine}/${AGENT_TOPICS.commands}`,
    `pattern write ${mine}/${AGENT_TOPICS.status}`,
    `pattern write ${mine}/${AGENT_TOPICS.telemetry}`,
    `pattern write ${mine}/${AGENT_TOPICS.commandResults}`,
    '',
    '# The control plane: every agent\'s topics.',
    `user ${controlPlaneUser}`,
    `topic readwrite ${FLEET_TOPIC_ROOT}/#`,
    '',
  ].join('\n');
}

export function mosquittoPasswords(agents: readonly BrokerCredential[], controlPlane: { user: string; hash: string }): string {
  const lines = [`${controlPlane.user}:${controlPlane.hash}`, ...agents.map((a) => `${a.agentId}:${a.mosquittoHash}`)];
  return `${lines.join('\n')}\n`;
}

/** Temp file in the same directory, fsync, rename, fsync the directory: a reader sees the old file or the new one. */
function writeAtomic(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export class MosquittoFiles {
  /** One hash per process for the control plane's user (a new salt each write would rewrite the file needlessly). */
  private controlPlaneHash: string | undefined;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: MosquittoFilesOptions,
    private readonly deps: { store: Pick<MessageStore, 'listBrokerCredentials'>; log: Logger },
  ) {}

  /** Rewrites both files from the store and signals Mosquitto; calls are serialized, so the last write wins with the latest data. */
  sync(reason: string): Promise<void> {
    const run = this.pending.then(() => this.write(reason));
    this.pending = run.catch(() => {});
    return run;
  }

  private async write(reason: string): Promise<void> {
    const agents = await this.deps.store.listBrokerCredentials();
    if (this.controlPlaneHash === undefined) {
      const password = readFileSync(this.options.controlPlanePasswordFile, 'utf8').split(/\r?\n/)[0] ?? '';
      this.controlPlaneHash = mosquittoPasswordHash(password);
    }
    writeAtomic(this.options.passwordFile, mosquittoPasswords(agents, { user: this.options.controlPlaneUser, hash: this.controlPlaneHash }));
    writeAtomic(this.options.aclFile, mosquittoAcl(this.options.controlPlaneUser));
    const signalled = this.reload();
    this.deps.log.info({ component: 'fleet', reason, agents: agents.length, password_file: this.options.passwordFile, acl_file: this.options.aclFile, reloaded: signalled }, 'wrote the Mosquitto password and ACL files');
  }

  /** SIGHUP makes Mosquitto re-read its password and ACL files. */
  private reload(): boolean {
    if (this.options.pidFile === undefined) return false;
    try {
      const pid = Number(readFileSync(this.options.pidFile, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1) throw new Error(`no pid in ${this.options.pidFile}`);
      process.kill(pid, 'SIGHUP');
      return true;
    } catch (err) {
      this.deps.log.warn({ component: 'fleet', pid_file: this.options.pidFile, err: { message: (err as Error).message } }, 'could not signal Mosquitto to reload its files; reload it yourself (kill -HUP)');
      return false;
    }
  }
}
