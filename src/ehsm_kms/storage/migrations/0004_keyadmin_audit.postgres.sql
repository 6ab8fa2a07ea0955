-- ehsm-kms schema, version 4 (PostgreSQL): key versions and rotation, aliases, scheduled deletion, the audit log
-- and the admin credential. The stored key state stays 0/1: a key pending deletion has deletion_due_ms > 0 and is
-- reported with keyState 2, and CancelKeyDeletion gives it back the state it had.

ALTER TABLE keys ADD COLUMN min_decrypt_version integer NOT NULL DEFAULT 1;
ALTER TABLE keys ADD COLUMN rotation_period_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN next_rotation_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN deletion_due_ms bigint NOT NULL DEFAULT 0;

-- An alias names one key of one app.
CREATE UNIQUE INDEX keys_alias ON keys (appid, alias) WHERE alias <> '';
CREATE INDEX keys_rotation_due ON keys (next_rotation_ms) WHERE rotation_period_ms > 0;
CREATE INDEX keys_deletion_due ON keys (deletion_due_ms) WHERE deletion_due_ms > 0;

-- One hash chain for the whole cluster: record n's hash covers record n-1's hash (see storage/audit_base.py).
CREATE TABLE audit (
    seq         bigint   NOT NULL PRIMARY KEY,
    time_ms     bigint   NOT NULL,
    appid       text     NOT NULL,
    action      text     NOT NULL,
    keyid       text     NOT NULL,
    key_version bigint   NOT NULL,
    code        integer  NOT NULL,
    message     text     NOT NULL,
    request_id  text     NOT NULL,
    client      text     NOT NULL,
    prev_hash   bytea    NOT NULL,
    hash        bytea    NOT NULL
);

-- The chain's head: the last record's seq and hash. Every append locks this row (once per batch of records).
CREATE TABLE audit_head (
    id   integer NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash bytea   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- The admin credential, made by the core at first start; only its blob (sealed by the core) is stored.
CREATE TABLE admin_credential (
    id         integer NOT NULL PRIMARY KEY CHECK (id = 1),
    admin_id   text    NOT NULL,
    blob       bytea   NOT NULL,
    created_ms bigint  NOT NULL
);
