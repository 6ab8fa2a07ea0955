-- ehsm-kms schema, version 3 (PostgreSQL): the secret manager.
--
-- Names and descriptions are UTF-8 bytes (bytea), so every string a client can send, NUL included, comes back
-- exact. A value is only ever stored sealed by the core, bound to (appid, secret_id, name, version).
-- A name is unique per app, secrets pending deletion included. Versions are numbered 1, 2, 3 ... per secret: the
-- primary key refuses a second version with the same number, the partial unique index a second current version,
-- whatever number of nodes write at once.

CREATE TABLE secrets (
    secret_id         text   NOT NULL PRIMARY KEY,
    appid             text   NOT NULL,
    name              bytea  NOT NULL,
    created_ms        bigint NOT NULL,
    encryption_key_id text,
    description       bytea,
    deleted_ms        bigint,
    planned_delete_ms bigint,
    rotation_interval text,
    next_rotation_ms  bigint,
    UNIQUE (appid, name),
    CHECK ((deleted_ms IS NULL) = (planned_delete_ms IS NULL))
);

CREATE INDEX secrets_due ON secrets (planned_delete_ms) WHERE planned_delete_ms IS NOT NULL;

CREATE TABLE secret_versions (
    secret_id  text    NOT NULL REFERENCES secrets (secret_id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version >= 1),
    ciphertext bytea   NOT NULL,
    created_ms bigint  NOT NULL,
    is_current boolean NOT NULL,
    PRIMARY KEY (secret_id, version)
);

CREATE UNIQUE INDEX secret_versions_current ON secret_versions (secret_id) WHERE is_current;

-- Each app's default secret key (the original's sm_default_cmk): a keyblob made by the core on first use and
-- bound to the app; it is not a CMK, so ListKey never shows it.
CREATE TABLE secret_default_keys (
    appid      text   NOT NULL PRIMARY KEY,
    blob       bytea  NOT NULL,
    created_ms bigint NOT NULL
);
