-- ehsm-kms schema, version 5 (SQLite): quote policies of the remote-attestation actions.
--
-- A policy belongs to one app and is found by (appid, policy_id). mr_enclave and mr_signer are UTF-8 bytes
-- (BLOB), kept exactly as the client sent them (the contract checks their length only).

CREATE TABLE quote_policies (
    policy_id  TEXT    NOT NULL PRIMARY KEY,
    appid      TEXT    NOT NULL,
    mr_enclave BLOB    NOT NULL,
    mr_signer  BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX quote_policies_app ON quote_policies (appid, policy_id);
