-- ehsm-kms schema, version 2 (PostgreSQL): one-time enrollment tokens (enroll_mode = token). Only a digest of
-- the token is stored; taking it deletes it.

CREATE TABLE enroll_tokens (
    digest     bytea  NOT NULL PRIMARY KEY,
    expires_ms bigint NOT NULL
);
