// Sources turn outside input (MLLP connections, dropped files) into buffered messages.

import { FerryError } from '../errors.js';
import type { SourceConfig } from '../config/index.js';
import { MllpSource } from './mllp/index.js';
import type { Source, SourceDeps } from './source.js';

export type { Source, SourceCounters, SourceDeps, SourceHealth } from './source.js';

export function createSource(config: SourceConfig, deps: SourceDeps): Source {
  switch (config.type) {
    case 'mllp':
      return new MllpSource(config, { sink: deps.buffer, log: deps.log, metrics: deps.metrics });
    case 'file_drop':
      throw new FerryError('source_unsupported', `source ${config.id}: file_drop is not built yet`);
  }
}
