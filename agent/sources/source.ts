// The one face every source shows the agent: a lifecycle (start, stop by a deadline), health,
// counters and where it takes messages from. The agent, its status and the fleet policy apply
// deal only with this interface; createSource() picks the implementation by `type`.

import type { Logger } from 'pino';
import type { AgentMetrics } from '../admin/metrics.js';
import type { MessageBuffer } from '../buffer/index.js';
import type { SourceConfig } from '../config/index.js';

export interface SourceHealth {
  readonly state: 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';
  readonly message: string;
  readonly since: string;
}

/** Counters a source reports in status and fleet telemetry: numbers, plus the last error text. */
export type SourceCounters = Readonly<Record<string, number | string | null>>;

export interface Source {
  readonly config: SourceConfig;
  /** Binds / starts watching. Rejects (with a FerryError saying why) when it cannot; then nothing runs. */
  start(): Promise<void>;
  /** Stops taking new input, finishes what was taken (answers, commits) until deadlineMs, then releases everything. */
  stop(deadlineMs: number): Promise<void>;
  health(): SourceHealth;
  counters(): SourceCounters;
  /** Where it takes messages from, for logs and status: mllp { listen: { host, port } | null }, file_drop { path }. */
  describe(): Readonly<Record<string, unknown>>;
}

export interface SourceDeps {
  readonly buffer: MessageBuffer;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
}
