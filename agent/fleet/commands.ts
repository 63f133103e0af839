// Fleet commands: each id runs at most once (the ledger records it durably before it runs), an
// expired one is refused with status "expired", arguments are checked per type, and every outcome
// becomes a result message. What each command does is the agent's (handlers).

import { commandArgsSchemas, commandMessageSchema, type CommandMessage, type CommandResultMessage } from '../../proto/fleet/index.js';
import type { LogLevel } from '../../proto/policy/index.js';
import { FerryError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CommandLedger } from './command-ledger.js';

export interface CommandHandlers {
  ping(): Record<string, unknown>;
  reload(): Promise<Record<string, unknown>>;
  flush(): Record<string, unknown>;
  setLogLevel(level: LogLevel): Record<string, unknown>;
  /** Answers the result; `after` runs once the result is delivered (the restart itself). */
  restart(): { result: Record<string, unknown>; after: () => void };
}

export interface CommandAnswer {
  readonly result: CommandResultMessage;
  readonly after?: () => void;
}

export class CommandRunner {
  private readonly log: Logger;

  constructor(
    private readonly ledger: CommandLedger,
    private readonly handlers: CommandHandlers,
    log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.log = log.child({ component: 'fleet', id: 'commands' });
  }

  async handle(raw: unknown): Promise<CommandAnswer | undefined> {
    const parsed = commandMessageSchema.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { id?: unknown } | undefined)?.id;
      const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      this.log.warn({ command_id: typeof id === 'string' ? id : null, problems: detail }, 'command refused: not a valid command message');
      if (typeof id !== 'string' || id === '' || id.length > 128) return undefined;
      return { result: this.finished(id, 'failed', undefined, { code: 'invalid_command', message: detail }) };
    }
    const cmd = parsed.data;
    const outcome = this.ledger.take(cmd.id, cmd.type, cmd.expires_at, this.now());
    if (!outcome.taken) {
      this.log.info({ command_id: cmd.id, type: cmd.type, result_known: outcome.previous !== null }, 'command already taken (redelivery); not run again');
      return outcome.previous ? { result: outcome.previous } : undefined;
    }
    const expires = Date.parse(cmd.expires_at);
    if (!Number.isFinite(expires) || this.now() > expires) {
      this.log.warn({ command_id: cmd.id, type: cmd.type, expires_at: cmd.expires_at }, 'command refused: expired before it arrived');
      return this.record({ result: this.finished(cmd.id, 'expired', undefined, { code: 'expired', message: `the command expired at ${cmd.expires_at}` }) });
    }
    return this.record(await this.run(cmd));
  }

  private async run(cmd: CommandMessage): Promise<CommandAnswer> {
    const args = commandArgsSchemas[cmd.type].safeParse(cmd.args);
    if (!args.success) {
      const detail = args.error.issues.map((i) => `args.${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      return { result: this.finished(cmd.id, 'failed', undefined, { code: 'invalid_args', message: detail }) };
    }
    this.log.info({ command_id: cmd.id, type: cmd.type }, 'running command');
    try {
      switch (cmd.type) {
        case 'ping':
          return { result: this.finished(cmd.id, 'succeeded', this.handlers.ping()) };
        case 'reload':
          return { result: this.finished(cmd.id, 'succeeded', await this.handlers.reload()) };
        case 'flush':
          return { result: this.finished(cmd.id, 'succeeded', this.handlers.flush()) };
        case 'set-log-level':
          return { result: this.finished(cmd.id, 'succeeded', this.handlers.setLogLevel((args.data as { level: LogLevel }).level)) };
        case 'restart': {
          const r = this.handlers.restart();
          return { result: this.finished(cmd.id, 'succeeded', r.result), after: r.after };
        }
      }
    } catch (err) {
      const code = err instanceof FerryError ? err.code : 'command_failed';
      return { result: this.finished(cmd.id, 'failed', undefined, { code, message: (err as Error).message }) };
    }
  }

  private record(answer: CommandAnswer): CommandAnswer {
    try {
      this.ledger.finish(answer.result);
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message }, command_id: answer.result.id }, 'could not keep the command result for redeliveries (the id itself is recorded)');
    }
    return answer;
  }

  private finished(id: string, status: CommandResultMessage['status'], result: Record<string, unknown> | undefined, error?: { code: string; message: string }): CommandResultMessage {
    return { id, status, ...(result ? { result } : {}), ...(error ? { error } : {}), finished_at: new Date(this.now()).toISOString() };
  }
}
