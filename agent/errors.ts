// One error class with a stable code from a closed catalogue: retry and exit decisions look at the
// code, never at the text. Messages never carry HL7 content.

export type FerryErrorCode =
  | 'config_invalid'
  | 'config_unreadable'
  | 'key_file_permissions'
  | 'key_file_invalid'
  | 'key_file_exists'
  | 'key_missing'
  | 'payload_corrupt'
  | 'buffer_closed'
  | 'buffer_io'
  | 'listen_failed'
  | 'admin_unreachable'
  | 'credentials_invalid'
  | 'credentials_permissions'
  | 'credentials_exist'
  | 'enroll_refused'
  | 'enroll_unreachable'
  | 'enroll_failed'
  | 'source_unsupported'
  | 'source_failed'
  | 'policy_invalid';

export class FerryError extends Error {
  constructor(
    readonly code: FerryErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FerryError';
  }
}
