// Enrollment: `ferry-agent enroll` trades a one-time token for the agent's id and secret, and
// DATA_DIR/credentials.json keeps them (0600) for the uplink (gRPC) and, later, the fleet client (MQTT).

export { CREDENTIALS_FILE, credentialsPath, readCredentials, writeCredentials, type AgentCredentials } from './credentials.js';
export { DEFAULT_GRPC_PORT, ENROLL_PATH, enroll, type EnrollOptions, type EnrollResult } from './enroll.js';
export { TOKEN_ENV, readEnrollmentToken } from './token.js';
