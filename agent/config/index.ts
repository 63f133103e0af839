// The agent's configuration: schema (type, defaults, validation) and the YAML loader.

export {
  agentConfigSchema,
  parseListen,
  parseSize,
  type AgentConfig,
  type FileDropSourceConfig,
  type MllpSourceConfig,
  type SourceConfig,
  type UplinkConfig,
} from './schema.js';
export { formatProblems, loadConfigFile, validateConfig, validateYaml, type ConfigProblem, type ValidationResult } from './load.js';
