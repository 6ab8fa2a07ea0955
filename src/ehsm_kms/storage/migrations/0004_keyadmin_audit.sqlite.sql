-- ehsm-kms schema, version 4 (SQLite): key versions and rotation, aliases, scheduled deletion, the audit log and
-- the admin credential. The stored key state stays 0/1: a key pending deletion has deletion_due_ms > 0 and is
-- reported with keyState 2, and CancelKeyDeletion gives it back the state it had.

ALTER TABLE keys ADD COLUMN min_decrypt_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE keys ADD COLUMN rotation_period_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN next_rotation_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN deletion_due_ms INTEGER NOT NULL DEFAULT 0;

-- An alias names one key of one app.
CREATE UNIQUE INDEX keys_alias ON keys (appid, alias) WHERE alias <> '';
CREATE INDEX keys_rotation_due ON keys (next_rotation_ms) WHERE rotation_period_ms > 0;
CREATE INDEX keys_deletion_due ON keys (deletion_due_ms) WHERE deletion_due_ms > 0;

-- One hash chain for the whole store: record n's hash covers record n-1's hash (see storage/audit_base.py).
CREATE TABLE audit (
    seq         INTEGER NOT NULL PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    appid       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    keyid       TEXT    NOT NULL,
    key_version INTEGER NOT NULL,
    code        INTEGER NOT NULL,
    message     TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    client      TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);

-- The chain's head: the last record's seq and hash. Appending locks this row.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- The admin credential, made by the core at first start; only its blob (sealed by the core) is stored.
CREATE TABLE admin_credential (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    admin_id   TEXT    NOT NULL,
    blob       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
