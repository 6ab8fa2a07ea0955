-- ehsm-kms schema, version 1 (PostgreSQL). Applied inside one transaction by PostgresStore.migrate(),
-- in the schema the store was opened with (its search_path).

CREATE TABLE apps (
    appid       text   NOT NULL PRIMARY KEY,
    apikey_blob bytea  NOT NULL,
    created_ms  bigint NOT NULL,
    state       text   NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked'))
);

CREATE TABLE keys (
    keyid           text     NOT NULL PRIMARY KEY,
    appid           text     NOT NULL,
    keyspec         text     NOT NULL,
    usage           text     NOT NULL,
    origin          text     NOT NULL,
    state           smallint NOT NULL CHECK (state IN (0, 1)),
    creation_ms     bigint   NOT NULL,
    expire_ms       bigint   NOT NULL,
    alias           text     NOT NULL DEFAULT '',
    description     text     NOT NULL DEFAULT '',
    primary_version integer  NOT NULL DEFAULT 1
);

CREATE INDEX keys_appid ON keys (appid);

CREATE TABLE key_versions (
    keyid      text    NOT NULL REFERENCES keys (keyid) ON DELETE CASCADE,
    version    integer NOT NULL,
    blob       bytea   NOT NULL,
    created_ms bigint  NOT NULL,
    PRIMARY KEY (keyid, version)
);

CREATE TABLE replay (
    appid      text   NOT NULL,
    digest     bytea  NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (appid, digest)
);

CREATE INDEX replay_expires ON replay (expires_ms);

CREATE TABLE import_tokens (
    keyid         text   NOT NULL PRIMARY KEY REFERENCES keys (keyid) ON DELETE CASCADE,
    token_id      text   NOT NULL,
    wrapping_blob bytea  NOT NULL,
    wrapping_spec text   NOT NULL,
    expires_ms    bigint NOT NULL
);
