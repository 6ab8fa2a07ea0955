-- ehsm-kms schema, version 3 (SQLite): the secret manager.
--
-- Names and descriptions are UTF-8 bytes (BLOB), so every string a client can send, NUL included, comes back
-- exact. A value is only ever stored sealed by the core, bound to (appid, secret_id, name, version).
-- A name is unique per app, secrets pending deletion included. Versions are numbered 1, 2, 3 ... per secret: the
-- primary key refuses a second version with the same number, the partial unique index a second current version.

CREATE TABLE secrets (
    secret_id         TEXT    NOT NULL PRIMARY KEY,
    appid             TEXT    NOT NULL,
    name              BLOB    NOT NULL,
    created_ms        INTEGER NOT NULL,
    encryption_key_id TEXT,
    description       BLOB,
    deleted_ms        INTEGER,
    planned_delete_ms INTEGER,
    rotation_interval TEXT,
    next_rotation_ms  INTEGER,
    UNIQUE (appid, name),
    CHECK ((deleted_ms IS NULL) = (planned_delete_ms IS NULL))
);

CREATE INDEX secrets_due ON secrets (planned_delete_ms) WHERE planned_delete_ms IS NOT NULL;

CREATE TABLE secret_versions (
    secret_id  TEXT    NOT NULL REFERENCES secrets (secret_id) ON DELETE CASCADE,
    version    INTEGER NOT NULL CHECK (version >= 1),
    ciphertext BLOB    NOT NULL,
    created_ms INTEGER NOT NULL,
    is_current INTEGER NOT NULL CHECK (is_current IN (0, 1)),
    PRIMARY KEY (secret_id, version)
) WITHOUT ROWID;

CREATE UNIQUE INDEX secret_versions_current ON secret_versions (secret_id) WHERE is_current;

-- Each app's default secret key (the original's sm_default_cmk): a keyblob made by the core on first use and
-- bound to the app; it is not a CMK, so ListKey never shows it.
CREATE TABLE secret_default_keys (
    appid      TEXT    NOT NULL PRIMARY KEY,
    blob       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
