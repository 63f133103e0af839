// The fleet policy schema and the field and source schemas it is made of, shared by the agent's
// local config, the agent's policy apply and the control plane's policy API.

export { cidr, isLoopback, listenAddress, logLevelSchema, parseListen, parseSize, secs, size, sourceId, tlsSchema, toProblem, type ConfigProblem, type LogLevel } from './fields.js';
export { fileDropSourceSchema, mllpSourceSchema, sourceSchema, sourcesSchema, type FileDropSourceConfig, type MllpSourceConfig, type SourceConfig } from './sources.js';
export {
  bufferPolicySchema,
  policyConfigSchema,
  uplinkSchema,
  validatePolicy,
  type PolicyConfig,
  type PolicyConfigInput,
  type PolicyValidation,
  type UplinkConfig,
} from './policy.js';
