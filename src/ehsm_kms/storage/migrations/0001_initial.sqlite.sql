-- ehsm-kms schema, version 1 (SQLite). Applied inside one transaction by SqliteStore.migrate().

CREATE TABLE apps (
    appid       TEXT    NOT NULL PRIMARY KEY,
    apikey_blob BLOB    NOT NULL,
    created_ms  INTEGER NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked'))
);

CREATE TABLE keys (
    keyid           TEXT    NOT NULL PRIMARY KEY,
    appid           TEXT    NOT NULL,
    keyspec         TEXT    NOT NULL,
    usage           TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    state           INTEGER NOT NULL CHECK (state IN (0, 1)),
    creation_ms     INTEGER NOT NULL,
    expire_ms       INTEGER NOT NULL,
    alias           TEXT    NOT NULL DEFAULT '',
    description     TEXT    NOT NULL DEFAULT '',
    primary_version INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX keys_appid ON keys (appid);

CREATE TABLE key_versions (
    keyid      TEXT    NOT NULL REFERENCES keys (keyid) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    blob       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (keyid, version)
) WITHOUT ROWID;

CREATE TABLE replay (
    appid      TEXT    NOT NULL,
    digest     BLOB    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (appid, digest)
) WITHOUT ROWID;

CREATE INDEX replay_expires ON replay (expires_ms);

CREATE TABLE import_tokens (
    keyid         TEXT    NOT NULL PRIMARY KEY REFERENCES keys (keyid) ON DELETE CASCADE,
    token_id      TEXT    NOT NULL,
    wrapping_blob BLOB    NOT NULL,
    wrapping_spec TEXT    NOT NULL,
    expires_ms    INTEGER NOT NULL
);
