// The running sources, keyed by id, and the reconciler that moves them to a new list of source
// configs (a fleet policy applied live, or a reload): removed sources stop, added ones start,
// changed ones are stopped and started with their new config, and untouched ones are never touched
// (their connections stay open). A changed source whose new config cannot start (port in use,
// folder missing) is started again with its last good config, and the failure is reported for it.

import { isDeepStrictEqual } from 'node:util';
import type { SourceConfig } from '../config/index.js';
import { FerryError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Source, SourceDeps } from './source.js';

/** Why one source of the wanted list is not running as asked. */
export interface SourceApplyError {
  readonly id: string;
  readonly type: SourceConfig['type'];
  /** Where in the wanted list: "sources[2]". */
  readonly path: string;
  readonly code: string;
  readonly message: string;
  readonly at: string;
  /** The config the source still runs (its last good one), or null when it runs nothing. */
  readonly kept: 'last_good' | 'none';
}

export interface SourceSetReport {
  readonly started: readonly string[];
  readonly stopped: readonly string[];
  readonly restarted: readonly string[];
  readonly unchanged: readonly string[];
  readonly failed: readonly SourceApplyError[];
}

export interface SourceSetOptions {
  readonly deps: SourceDeps;
  readonly create: (config: SourceConfig, deps: SourceDeps) => Source;
  /** How long a stopping source may take to answer what it has read (ms). */
  readonly stopTimeoutMs: number;
}

export class SourceSet {
  /** Running (or at least started) sources in the order of the list they came from. */
  private running = new Map<string, Source>();
  private failures = new Map<string, SourceApplyError>();
  private readonly log: Logger;

  constructor(private readonly options: SourceSetOptions) {
    this.log = options.deps.log.child({ component: 'sources' });
  }

  list(): Source[] {
    return [...this.running.values()];
  }

  /** The configs actually in force (what a later apply diffs against). */
  configs(): SourceConfig[] {
    return this.list().map((s) => s.config);
  }

  /** The failures of the last apply, by source id. */
  errors(): SourceApplyError[] {
    return [...this.failures.values()];
  }

  /**
   * Moves the running set to `wanted`. Stops go first (a changed source may keep its port, and a
   * swap of two ports must work), then starts in list order. Never throws for a source that fails:
   * each failure is in the report and in errors().
   */
  async apply(wanted: readonly SourceConfig[]): Promise<SourceSetReport> {
    const wantedIds = new Set(wanted.map((c) => c.id));
    const stopped: string[] = [];
    const unchanged: string[] = [];
    /** Changed sources that must stop before their new config can start (same port, same folder). */
    const replaced = new Map<string, Source>();
    /** Changed sources whose new config binds elsewhere: the new one starts first, the old stops after. */
    const overlapping = new Map<string, Source>();
    const toStop: Source[] = [];
    for (const [id, source] of this.running) {
      const next = wanted.find((c) => c.id === id);
      if (!next) {
        toStop.push(source);
        stopped.push(id);
      } else if (isDeepStrictEqual(next, source.config)) {
        unchanged.push(id);
      } else if (canOverlap(source.config, next)) {
        overlapping.set(id, source);
      } else {
        toStop.push(source);
        replaced.set(id, source);
      }
    }
    await this.stopEach(toStop);

    const next = new Map<string, Source>();
    const failures = new Map<string, SourceApplyError>();
    const started: string[] = [];
    const restarted: string[] = [];
    const fallbacks: { index: number; old: Source; error: SourceApplyError }[] = [];
    const retired: Source[] = [];
    for (const [index, config] of wanted.entries()) {
      const current = this.running.get(config.id);
      if (current && !replaced.has(config.id) && !overlapping.has(config.id)) {
        next.set(config.id, current);
        continue;
      }
      const result = await this.startOne(config, index);
      if (result.ok) {
        next.set(config.id, result.source);
        (current ? restarted : started).push(config.id);
        if (current && overlapping.has(config.id)) retired.push(current);
        continue;
      }
      if (current && overlapping.has(config.id)) {
        // The old one never stopped: it simply stays, untouched.
        next.set(config.id, current);
        failures.set(config.id, { ...result.error, kept: 'last_good' });
        this.log.error({ id: config.id, err: { code: result.error.code, message: result.error.message } }, 'source kept its last good config: the new one could not start; fix the policy or free the resource');
      } else if (current) {
        fallbacks.push({ index, old: current, error: result.error });
      } else {
        failures.set(config.id, result.error);
      }
    }
    await this.stopEach(retired);
    // Last good: a changed source whose new config failed runs its old config again.
    for (const { index, old, error } of fallbacks) {
      const again = await this.startOne(old.config, index);
      if (again.ok) {
        next.set(old.config.id, again.source);
        failures.set(old.config.id, { ...error, kept: 'last_good' });
        this.log.error({ id: old.config.id, err: { code: error.code, message: error.message } }, 'source kept its last good config: the new one could not start; fix the policy or free the resource');
      } else {
        failures.set(old.config.id, { ...error, message: `${error.message}; restarting its last good config failed too: ${again.error.message}`, kept: 'none' });
        this.log.error({ id: old.config.id, err: { code: again.error.code, message: again.error.message } }, 'source is down: neither its new nor its last good config could start');
      }
    }
    // Keep list order: the wanted order, sources that failed without a fallback left out.
    this.running = new Map(wanted.flatMap((c) => (next.has(c.id) ? [[c.id, next.get(c.id)!] as const] : [])));
    this.failures = failures;
    const failed = [...failures.values()];
    if (wantedIds.size > 0 || stopped.length > 0) {
      this.log.info({ started, stopped, restarted, unchanged: unchanged.length, failed: failed.map((f) => f.id) }, 'sources reconciled');
    }
    return { started, stopped, restarted, unchanged, failed };
  }

  private async stopEach(sources: readonly Source[]): Promise<void> {
    const deadline = Date.now() + this.options.stopTimeoutMs;
    await Promise.all(sources.map((s) => s.stop(deadline)));
  }

  async stopAll(deadlineMs: number): Promise<void> {
    await Promise.all(this.list().map((s) => s.stop(deadlineMs)));
  }

  private async startOne(config: SourceConfig, index: number): Promise<{ ok: true; source: Source } | { ok: false; error: SourceApplyError }> {
    let source: Source | undefined;
    try {
      source = this.options.create(config, this.options.deps);
      await source.start();
      return { ok: true, source };
    } catch (err) {
      // A half-started source releases whatever it bound.
      await source?.stop(Date.now()).catch(() => undefined);
      const code = err instanceof FerryError ? err.code : ((err as NodeJS.ErrnoException).code ?? 'source_failed');
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, error: { id: config.id, type: config.type, path: `sources[${index}]`, code, message, at: new Date().toISOString(), kept: 'none' } };
    }
  }
}

/**
 * Whether the new config of a source may start while the old one still runs: only a listener
 * moving to another address (two watchers on one folder would take its files twice).
 */
function canOverlap(old: SourceConfig, next: SourceConfig): boolean {
  return old.type === 'mllp' && next.type === 'mllp' && old.listen !== next.listen;
}
