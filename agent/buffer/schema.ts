// The buffer's tables. Payloads are sealed (AES-256-GCM); the other columns are the metadata a
// forwarder may show: type, trigger, control id, sending app/facility, version, size, hash.

export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  source_id        TEXT    NOT NULL,
  received_at      INTEGER NOT NULL,
  key_id           TEXT    NOT NULL,
  payload          BLOB    NOT NULL,
  message_type     TEXT    NOT NULL,
  trigger_event    TEXT    NOT NULL,
  control_id       TEXT    NOT NULL,
  sending_app      TEXT    NOT NULL,
  sending_facility TEXT    NOT NULL,
  version          TEXT    NOT NULL,
  size             INTEGER NOT NULL,
  sha256           BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
  key     BLOB PRIMARY KEY,
  seq     INTEGER NOT NULL,
  seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_seen_at ON dedupe (seen_at);
`;

export const MESSAGE_COLUMNS =
  'seq, source_id, received_at, key_id, payload, message_type, trigger_event, control_id, sending_app, sending_facility, version, size, sha256';
