// Sources turn outside input (MLLP connections, dropped files) into buffered messages.

import type { SourceConfig } from '../config/index.js';
import { FileDropSource } from './file-drop/index.js';
import { MllpSource } from './mllp/index.js';
import type { Source, SourceDeps } from './source.js';

export type { Source, SourceCounters, SourceDeps, SourceHealth } from './source.js';
export { SourceSet, type SourceApplyError, type SourceSetReport } from './source-set.js';

export function createSource(config: SourceConfig, deps: SourceDeps): Source {
  switch (config.type) {
    case 'mllp':
      return new MllpSource(config, { sink: deps.buffer, log: deps.log, metrics: deps.metrics });
    case 'file_drop':
      return new FileDropSource(config, { buffer: deps.buffer, log: deps.log, metrics: deps.metrics });
  }
}
