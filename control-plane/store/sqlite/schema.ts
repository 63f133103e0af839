// The control plane's SQLite tables. Payloads are sealed (AES-256-GCM, key id per row); every other
// column is metadata the API may show.

export const SCHEMA_VERSION = 3;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
  id          TEXT    PRIMARY KEY,
  name        TEXT    NOT NULL,
  policy_id   TEXT    NOT NULL,
  secret_salt BLOB    NOT NULL,
  secret_hash BLOB    NOT NULL,
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER,
  last_seen   INTEGER
);
-- Each agent's secret in Mosquitto's password-file form (PBKDF2-SHA512, salted), made at enrollment
-- while the plaintext is at hand, so the control plane can write an external Mosquitto's password
-- file (fleet/broker/mosquitto-files.ts). A table of its own: no migration of agents is needed.
CREATE TABLE IF NOT EXISTS agent_broker_credentials (
  agent_id       TEXT PRIMARY KEY,
  mosquitto_hash TEXT NOT NULL
) WITHOUT ROWID;
-- Tokens (enrollment and API) are random 256-bit strings; only their SHA-256 is kept, and a
-- lookup by that hash is the check (a preimage of a random 256-bit value cannot be found).
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  id          TEXT    PRIMARY KEY,
  token_hash  BLOB    NOT NULL UNIQUE,
  policy_id   TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  created_by  TEXT    NOT NULL,
  expires_at  INTEGER NOT NULL,
  max_uses    INTEGER NOT NULL,
  uses        INTEGER NOT NULL DEFAULT 0,
  revoked_at  INTEGER
);
CREATE TABLE IF NOT EXISTS api_tokens (
  id          TEXT    PRIMARY KEY,
  token_hash  BLOB    NOT NULL UNIQUE,
  name        TEXT    NOT NULL,
  role        TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
-- Append-only: the store has no statement that updates or deletes a row here.
CREATE TABLE IF NOT EXISTS audit_log (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  at      INTEGER NOT NULL,
  actor   TEXT    NOT NULL,
  action  TEXT    NOT NULL,
  target  TEXT    NOT NULL,
  details TEXT    NOT NULL
);
-- One row per (agent, buffer): the high-water mark the Welcome and each Ack report, updated in the
-- same transaction as the batch's rows, so it never runs ahead of (or behind) what is stored, and
-- it survives any later pruning of old messages.
CREATE TABLE IF NOT EXISTS agent_buffers (
  agent_id        TEXT    NOT NULL,
  buffer_id       TEXT    NOT NULL,
  committed_seq   INTEGER NOT NULL,
  messages        INTEGER NOT NULL,
  bytes           INTEGER NOT NULL,
  first_commit_at INTEGER NOT NULL,
  last_commit_at  INTEGER NOT NULL,
  PRIMARY KEY (agent_id, buffer_id)
) WITHOUT ROWID;
-- Fleet policies: one row per policy, one row per version. A version's config is the document as
-- the admin wrote it (validated with proto/policy before it is stored); versions are never changed.
CREATE TABLE IF NOT EXISTS policies (
  id             TEXT    PRIMARY KEY,
  name           TEXT    NOT NULL,
  latest_version INTEGER NOT NULL,
  created_at     INTEGER NOT NULL,
  created_by     TEXT    NOT NULL,
  updated_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_versions (
  policy_id  TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  config     TEXT    NOT NULL,
  created_by TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (policy_id, version)
) WITHOUT ROWID;
-- The latest status each agent published (JSON, as received), written in coalesced batches.
CREATE TABLE IF NOT EXISTS agent_status (
  agent_id               TEXT    PRIMARY KEY,
  status                 TEXT    NOT NULL,
  received_at            INTEGER NOT NULL,
  online                 INTEGER NOT NULL,
  applied_policy_version INTEGER,
  backlog_samples        TEXT    NOT NULL
) WITHOUT ROWID;
-- Commands to agents. seq orders listings (ids are random UUIDs); AUTOINCREMENT: never reused.
CREATE TABLE IF NOT EXISTS commands (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT    NOT NULL UNIQUE,
  agent_id    TEXT    NOT NULL,
  type        TEXT    NOT NULL,
  args        TEXT    NOT NULL,
  issued_by   TEXT    NOT NULL,
  issued_at   INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  status      TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'expired')),
  result      TEXT,
  finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS commands_agent ON commands (agent_id, seq);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (status, expires_at);
-- AUTOINCREMENT: ids are never reused, so a listing cursor never skips or repeats a row. The
-- payload is the last column, so metadata reads do not touch its overflow pages.
CREATE TABLE IF NOT EXISTS messages (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id         TEXT    NOT NULL,
  buffer_id        TEXT    NOT NULL,
  seq              INTEGER NOT NULL,
  source_id        TEXT    NOT NULL,
  received_at      INTEGER NOT NULL,
  stored_at        INTEGER NOT NULL,
  message_type     TEXT    NOT NULL,
  trigger_event    TEXT    NOT NULL,
  control_id       TEXT    NOT NULL,
  sending_app      TEXT    NOT NULL,
  sending_facility TEXT    NOT NULL,
  version          TEXT    NOT NULL,
  size             INTEGER NOT NULL,
  sha256           BLOB    NOT NULL,
  key_id           TEXT    NOT NULL,
  payload          BLOB    NOT NULL,
  UNIQUE (agent_id, buffer_id, seq)
);
CREATE INDEX IF NOT EXISTS messages_agent ON messages (agent_id, id);
CREATE INDEX IF NOT EXISTS messages_source ON messages (source_id, id);
CREATE INDEX IF NOT EXISTS messages_type ON messages (message_type, trigger_event, id);
CREATE INDEX IF NOT EXISTS messages_control_id ON messages (control_id);
CREATE INDEX IF NOT EXISTS messages_received_at ON messages (received_at);
`;

/** Statements that bring an older store up to SCHEMA_VERSION (the CREATE IF NOT EXISTS above adds new tables). */
export const MIGRATIONS: Readonly<Record<number, string>> = {
  1: 'ALTER TABLE agents ADD COLUMN last_seen INTEGER;',
  // 2 → 3 adds only tables (policies, policy_versions, agent_status, commands), which SCHEMA_SQL
  // creates; the built-in `default` policy is inserted at every open if missing.
  2: '',
};

/** Columns a listing reads (no payload). */
export const SUMMARY_COLUMNS =
  'id, agent_id, buffer_id, seq, source_id, received_at, stored_at, message_type, trigger_event, control_id, sending_app, sending_facility, version, size, sha256';

export const INSERT_COLUMNS =
  'agent_id, buffer_id, seq, source_id, received_at, stored_at, message_type, trigger_event, control_id, sending_app, sending_facility, version, size, sha256, key_id, payload';
