// The agent's configuration: schema (type, defaults, validation) and the YAML loader.

export {
  agentConfigSchema,
  parseListen,
  parseSize,
  fleetSchema,
  type AgentConfig,
  type FleetConfig,
  type FileDropSourceConfig,
  type MllpSourceConfig,
  type SourceConfig,
  type UplinkConfig,
} from './schema.js';
export { formatProblems, loadConfigFile, validateConfig, validateYaml, type ConfigProblem, type ValidationResult } from './load.js';
