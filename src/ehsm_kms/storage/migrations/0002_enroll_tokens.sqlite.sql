-- ehsm-kms schema, version 2 (SQLite): one-time enrollment tokens (enroll_mode = token). Only a digest of the
-- token is stored; taking it deletes it.

CREATE TABLE enroll_tokens (
    digest     BLOB    NOT NULL PRIMARY KEY,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
