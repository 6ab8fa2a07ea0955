-- ehsm-kms schema, version 5 (PostgreSQL): quote policies of the remote-attestation actions.
--
-- A policy belongs to one app and is found by (appid, policy_id). mr_enclave and mr_signer are UTF-8 bytes
-- (bytea), kept exactly as the client sent them (the contract checks their length only; text cannot hold NUL).

CREATE TABLE quote_policies (
    policy_id  text   NOT NULL PRIMARY KEY,
    appid      text   NOT NULL,
    mr_enclave bytea  NOT NULL,
    mr_signer  bytea  NOT NULL,
    created_ms bigint NOT NULL
);

CREATE INDEX quote_policies_app ON quote_policies (appid, policy_id);
