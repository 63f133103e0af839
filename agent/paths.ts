// Where an agent keeps its files, from its config. Kept apart from agent.ts so the offline
// commands (check, rotate-key, import) find the buffer without loading the running agent's modules.

import { join } from 'node:path';
import type { AgentConfig } from './config/index.js';

export interface AgentPaths {
  readonly dataDir: string;
  readonly bufferFile: string;
  readonly keyFile: string;
}

export function agentPaths(config: AgentConfig): AgentPaths {
  return {
    dataDir: config.data_dir,
    bufferFile: join(config.data_dir, 'buffer.db'),
    keyFile: config.buffer.key_file ?? join(config.data_dir, 'buffer-keys.json'),
  };
}
