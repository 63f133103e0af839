// One error class with a stable code from a closed catalogue: callers (the gRPC status mapping, the
// HTTP error handler) decide on the code, never on the text. Messages never carry HL7 content.

export type ControlPlaneErrorCode =
  | 'key_file_permissions'
  | 'key_file_invalid'
  | 'key_file_exists'
  | 'key_missing'
  | 'payload_corrupt'
  | 'payload_hash_mismatch'
  | 'batch_invalid'
  | 'cursor_invalid'
  | 'query_invalid'
  | 'store_closed'
  | 'store_io'
  | 'listen_failed'
  | 'tls_invalid'
  | 'fleet_bus_unavailable'
  | 'fleet_bus_config'
  | 'policy_exists'
  | 'policy_unknown';

export class ControlPlaneError extends Error {
  constructor(
    readonly code: ControlPlaneErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ControlPlaneError';
  }
}
