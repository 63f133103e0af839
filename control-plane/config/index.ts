// The control plane's configuration: the zod schema (type, defaults, validation) and the YAML loader
// that reports every problem at once, by path.

export { controlPlaneConfigSchema, parseListen, type ControlPlaneConfig } from './schema.js';
export { formatProblems, loadConfigFile, validateConfig, validateYaml, type ConfigProblem, type ValidationResult } from './load.js';
