// The buffer's tables. Payloads are sealed (AES-256-GCM); the other columns are the metadata a
// forwarder may show: type, trigger, control id, sending app/facility, version, size, hash.

export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq              INTEGER PRIMARY KEY,
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
  sha256           BLOB    NOT NULL,
  dedupe           INTEGER NOT NULL DEFAULT 0
);
-- Keyed by source, then control id: senders number their messages in order, so new entries land
-- next to each other in the B-tree instead of on random pages (a hash key would dirty one page per
-- message at high rates).
CREATE TABLE IF NOT EXISTS dedupe (
  source_id  TEXT    NOT NULL,
  control_id TEXT    NOT NULL,
  sha256     BLOB    NOT NULL,
  seq        INTEGER NOT NULL,
  seen_at    INTEGER NOT NULL,
  PRIMARY KEY (source_id, control_id, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_seen_at ON dedupe (seen_at);
-- The dedupe entry is written by the same statement as its row: one round trip per commit, and
-- the entry outlives the row (rows are deleted once delivered; resends must still be recognised).
CREATE TRIGGER IF NOT EXISTS messages_dedupe AFTER INSERT ON messages WHEN NEW.dedupe = 1
BEGIN
  INSERT OR REPLACE INTO dedupe (source_id, control_id, sha256, seq, seen_at)
  VALUES (NEW.source_id, NEW.control_id, NEW.sha256, NEW.seq, NEW.received_at);
END;
-- The memory of what file sources (file_drop, import) took: one row per (source, file content),
-- written in the same transaction as the file's messages (consecutive seqs from first_seq). It
-- outlives the messages: after a crash between commit and archive, or an import resumed, a file
-- whose hash is here is not stored again. The file name may carry patient data: it is sealed
-- like a payload (authenticated data binds it to its source and hash). See README.md.
CREATE TABLE IF NOT EXISTS files (
  source_id  TEXT    NOT NULL,
  sha256     BLOB    NOT NULL,
  size       INTEGER NOT NULL,
  messages   INTEGER NOT NULL,
  first_seq  INTEGER NOT NULL,
  taken_at   INTEGER NOT NULL,
  key_id     TEXT    NOT NULL,
  name       BLOB    NOT NULL,
  PRIMARY KEY (source_id, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_taken_at ON files (taken_at);
`;

export const FILE_COLUMNS = 'source_id, sha256, size, messages, first_seq, taken_at, key_id, name';
export const FILE_COLUMN_COUNT = 8;

export const MESSAGE_COLUMNS =
  'seq, source_id, received_at, key_id, payload, message_type, trigger_event, control_id, sending_app, sending_facility, version, size, sha256';

/** Columns written on insert: the readable ones plus the dedupe flag. */
export const INSERT_COLUMNS = `${MESSAGE_COLUMNS}, dedupe`;
export const INSERT_COLUMN_COUNT = 14;
