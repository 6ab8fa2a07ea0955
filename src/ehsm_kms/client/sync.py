"""``Client``: the synchronous SDK, one method per action."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from ehsm_kms.client import _calls as c
from ehsm_kms.client import attested
from ehsm_kms.client import results as r
from ehsm_kms.client._base import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUT, KEEPALIVE, ClientBase
from ehsm_kms.client._calls import Bytes, Name

T = TypeVar("T")


class SyncSession(ClientBase):
    """The synchronous half shared by :class:`Client` and :class:`~ehsm_kms.client.AdminClient`: one
    ``httpx.Client``, and sending a call with retries."""

    def __init__(
        self,
        url: str | None = None,
        appid: str | None = None,
        apikey: str | None = None,
        *,
        ca_bundle: str | None = None,
        insecure: bool = False,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            url,
            appid,
            apikey,
            ca_bundle=ca_bundle,
            insecure=insecure,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        self._transport = transport
        self._http = httpx.Client(verify=self._verify, timeout=self._timeout, limits=KEEPALIVE, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, http: httpx.Client, call: c.Call[Any]) -> httpx.Response:
        params, content, headers = self._request_parts(call)
        return http.request(call.method, self._endpoint, params=params, content=content, headers=headers)

    def _run(self, call: c.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._send(self._http, call)
            except httpx.HTTPError as exc:
                delay = self._retry_delay(call, exc, attempt)
                if delay is None:
                    raise self._failed(call, exc) from exc
                time.sleep(delay)
                attempt += 1
                continue
            return self._answer(call, response)

    def _once(self, http: httpx.Client, call: c.Call[T]) -> tuple[httpx.Response, T]:
        """One attempt, no retry (attested enrollment: the connection matters)."""
        try:
            response = self._send(http, call)
        except httpx.HTTPError as exc:
            raise self._failed(call, exc) from exc
        return response, self._answer(call, response)


class Client(SyncSession):
    """A client of one ehsm-kms (or eHSM-KMS) server.

    ``url``, ``appid`` and ``apikey`` default to ``EHSM_KMS_URL``/``EHSM_SERVER_URL``, ``EHSM_KMS_APPID``/
    ``EHSM_APPID`` and ``EHSM_KMS_APIKEY``/``EHSM_APIKEY``. TLS certificates are verified (``ca_bundle`` for a private
    CA, default ``EHSM_KMS_CA_BUNDLE``); ``insecure=True`` turns verification off and must be asked for. Safe actions
    (reads and pure cryptography) are retried ``retries`` times after a connection failure, with exponential
    backoff from ``backoff`` seconds. ``transport`` replaces the network (any ``httpx.BaseTransport``).
    """

    # ---------------------------------------------------------------- app
    def get_version(self) -> r.Version:
        """GetVersion (no credentials needed)."""
        return self._run(c.get_version())

    def enroll(
        self,
        token: str | None = None,
        *,
        attest: attested.PolicySource | None = None,
        verifier: attested.Verifier | None = None,
    ) -> r.Enrollment:
        """Enroll a new app; ``token`` is the one-time enrollment token of a server in ``enroll_mode=token``.

        With ``attest`` (a policy, or a policy file), the node must first show evidence bound to this TLS
        connection's key that verifies against the policy, or no credentials are accepted
        (:class:`~ehsm_kms.provisioning.attest.AttestationError`); ``verifier`` is the kind's verifier where the
        policy alone is not enough (DCAP collateral). A client without credentials starts using the new app's.
        """
        made = self._run(c.enroll(token)) if attest is None else self._attested_enroll(token, attest, verifier)
        if not self.has_credentials:
            self.set_credentials(made.appid, made.apikey)
        return made

    def _attested_enroll(
        self, token: str | None, source: attested.PolicySource, verifier: attested.Verifier | None
    ) -> r.Enrollment:
        check = attested.AttestedEnrollment.start(self._endpoint, source, verifier)
        limits = attested.ONE_CONNECTION
        with httpx.Client(verify=self._verify, timeout=self._timeout, limits=limits, transport=self._transport) as http:
            response, evidence = self._once(http, c.attest_node(check.nonce))
            check.check_evidence(response, evidence)
            response, made = self._once(http, c.enroll(token))
            return check.accept(response, made)

    def attest_node(self, nonce: Bytes) -> r.NodeEvidence:
        """AttestNode: the node's evidence over ``nonce`` and its TLS key, unchecked (``enroll(attest=...)`` checks
        it; this is for inspection and for verifiers of one's own)."""
        return self._run(c.attest_node(nonce))

    def call(self, action: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any action by name, signed like every other; the ``result`` object as the server sent it."""
        return self._run(c.raw(action, payload))

    # ---------------------------------------------------------------- keys
    def create_key(
        self,
        keyspec: Name = "EH_AES_GCM_256",
        origin: Name = "EH_INTERNAL_KEY",
        keyusage: Name | None = None,
    ) -> str:
        """CreateKey; the new keyid. ``keyusage`` defaults to SIGN_VERIFY for EC and HMAC keys, else
        ENCRYPT_DECRYPT."""
        return self._run(c.create_key(keyspec, origin, keyusage))

    def list_keys(self) -> tuple[r.KeyInfo, ...]:
        """ListKey: this app's keys."""
        return self._run(c.list_keys())

    def enable_key(self, keyid: str) -> None:
        self._run(c.key_action("EnableKey", keyid))

    def disable_key(self, keyid: str) -> None:
        self._run(c.key_action("DisableKey", keyid))

    def delete_key(self, keyid: str) -> None:
        """DeleteKey: the key and everything encrypted under it is gone for good."""
        self._run(c.key_action("DeleteKey", keyid))

    def delete_all_keys(self) -> None:
        """DeleteAllKey: every key of this app."""
        self._run(c.delete_all_keys())

    def get_public_key(self, keyid: str) -> str:
        """GetPublicKey: the PEM public key of an RSA, EC or SM2 key."""
        return self._run(c.get_public_key(keyid))

    def get_parameters_for_import(self, keyid: str, wrapping_keyspec: Name = "EH_RSA_2048") -> r.ImportParameters:
        """BYOK step 1, for a key created with origin EH_EXTERNAL_KEY."""
        return self._run(c.get_parameters_for_import(keyid, wrapping_keyspec))

    def import_key_material(
        self, keyid: str, key_material: Bytes, import_token: str, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP"
    ) -> bool:
        """BYOK step 2: ``key_material`` is the raw key already wrapped with the step-1 public key."""
        return self._run(c.import_key_material(keyid, key_material, import_token, padding_mode))

    def import_key(
        self,
        keyid: str,
        material: Bytes,
        *,
        wrapping_keyspec: Name = "EH_RSA_2048",
        padding_mode: Name = "EH_RSA_PKCS1_OAEP",
    ) -> bool:
        """Both BYOK steps: wrap the raw ``material`` here with the server's one-time public key and import it."""
        from ehsm_kms.core.stream import wrap_key_material

        params = self.get_parameters_for_import(keyid, wrapping_keyspec)
        wrapped = wrap_key_material(params.pubkey, bytes(material), c.name(padding_mode))
        return self.import_key_material(keyid, wrapped, params.import_token, padding_mode=padding_mode)

    # ---------------------------------------------------------------- cryptography
    def encrypt(self, keyid: str, plaintext: Bytes, *, aad: Bytes | None = None) -> bytes:
        """Encrypt up to 6 KiB under a symmetric key (larger data: :mod:`ehsm_kms.client.envelope`)."""
        return self._run(c.encrypt(keyid, plaintext, aad))

    def decrypt(self, keyid: str, ciphertext: Bytes, *, aad: Bytes | None = None) -> bytes:
        return self._run(c.decrypt(keyid, ciphertext, aad))

    def asymmetric_encrypt(self, keyid: str, plaintext: Bytes, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP") -> bytes:
        """RSA (OAEP-SHA-256 or PKCS#1 v1.5) or SM2 encryption (SM2 ignores the padding mode)."""
        return self._run(c.asymmetric_encrypt(keyid, plaintext, padding_mode))

    def asymmetric_decrypt(self, keyid: str, ciphertext: Bytes, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP") -> bytes:
        return self._run(c.asymmetric_decrypt(keyid, ciphertext, padding_mode))

    def sign(
        self,
        keyid: str,
        message: Bytes,
        *,
        digest_mode: Name = "EH_SHA_256",
        padding_mode: Name = "EH_RSA_PKCS1_PSS",
        message_type: Name = "EH_RAW",
    ) -> bytes:
        """Sign ``message`` (``EH_DIGEST``: it is already the digest). EC and SM2 ignore the padding mode; SM2
        always uses SM3."""
        return self._run(c.sign(keyid, message, digest_mode, padding_mode, message_type))

    def verify(
        self,
        keyid: str,
        message: Bytes,
        signature: Bytes,
        *,
        digest_mode: Name = "EH_SHA_256",
        padding_mode: Name = "EH_RSA_PKCS1_PSS",
        message_type: Name = "EH_RAW",
    ) -> bool:
        """Whether ``signature`` is valid for ``message``."""
        return self._run(c.verify(keyid, message, signature, digest_mode, padding_mode, message_type))

    def generate_data_key(self, keyid: str, keylen: int = 32, *, aad: Bytes | None = None) -> r.DataKey:
        """A fresh data key, in plaintext and encrypted under ``keyid`` (``decrypt`` recovers it)."""
        return self._run(c.generate_data_key(keyid, keylen, aad))

    def generate_data_key_without_plaintext(self, keyid: str, keylen: int = 32, *, aad: Bytes | None = None) -> bytes:
        """Only the encrypted data key (for whoever will ``decrypt`` it later)."""
        return self._run(c.generate_data_key_without_plaintext(keyid, keylen, aad))

    def export_data_key(self, keyid: str, ukeyid: str, ciphertext: Bytes, *, aad: Bytes | None = None) -> bytes:
        """Re-encrypt a data key from ``keyid`` to the RSA or SM2 key ``ukeyid`` (RSA: always OAEP-SHA-256)."""
        return self._run(c.export_data_key(keyid, ukeyid, ciphertext, aad))

    def generate_random(self, length: int = 32) -> bytes:
        """``length`` (1..1024) random bytes from the server's core."""
        return self._run(c.generate_random(length))

    def generate_mac(self, keyid: str, message: Bytes, *, digest_mode: Name | None = None) -> bytes:
        """HMAC of ``message`` with an EH_HMAC key (SHA-256 unless ``digest_mode`` says otherwise)."""
        return self._run(c.generate_mac(keyid, message, digest_mode))

    def verify_mac(self, keyid: str, message: Bytes, mac: Bytes, *, digest_mode: Name | None = None) -> bool:
        return self._run(c.verify_mac(keyid, message, mac, digest_mode))

    # ---------------------------------------------------------------- secret manager
    def create_secret(
        self,
        name: str,
        data: str | Bytes,
        *,
        encryption_key_id: str | None = None,
        description: str | None = None,
        rotation_interval: str | None = None,
    ) -> None:
        """CreateSecret: version 1 of ``name`` (text; bytes are taken as UTF-8)."""
        self._run(c.create_secret(name, data, encryption_key_id, description, rotation_interval))

    def update_secret_description(self, name: str, description: str | None = None) -> None:
        """UpdateSecretDesc; no description removes it."""
        self._run(c.update_secret_description(name, description))

    def put_secret_value(self, name: str, data: str | Bytes) -> None:
        """PutSecretValue: a new current version."""
        self._run(c.put_secret_value(name, data))

    def list_secret_version_ids(self, name: str) -> r.SecretVersions:
        return self._run(c.list_secret_version_ids(name))

    def list_secrets(self, name: str | None = None) -> tuple[r.SecretSummary, ...]:
        return self._run(c.list_secrets(name))

    def describe_secret(self, name: str) -> r.SecretDescription:
        """DescribeSecret; :class:`~ehsm_kms.client.errors.SecretNotFound` for an unknown name."""
        return self._run(c.describe_secret(name))

    def delete_secret(self, name: str, *, recovery_period: int | None = None, force: bool = False) -> None:
        """DeleteSecret: scheduled after ``recovery_period`` days (server default 30), or at once with ``force``."""
        self._run(c.delete_secret(name, recovery_period, force))

    def get_secret_value(self, name: str, version_id: int | None = None) -> r.SecretValue:
        """GetSecretValue: the current version, or ``version_id``."""
        return self._run(c.get_secret_value(name, version_id))

    def restore_secret(self, name: str) -> None:
        """RestoreSecret: cancel a scheduled deletion."""
        self._run(c.restore_secret(name))

    # ---------------------------------------------------------------- remote attestation
    def generate_quote(self, challenge: Bytes) -> r.Quote:
        """GenerateQuote: the node's TEE evidence binding ``challenge``; a node without a TEE answers
        :class:`~ehsm_kms.errors.CryptoError` ("Server exception.")."""
        return self._run(c.generate_quote(challenge))

    def verify_quote(self, quote: Bytes, nonce: Bytes, *, policy_id: str | None = None) -> r.QuoteVerification:
        """VerifyQuote, against the stored policy ``policy_id`` if given. Check the result's ``ok``: a genuine quote
        of a TCB that is not up to date verifies too."""
        return self._run(c.verify_quote(quote, nonce, policy_id))

    def upload_quote_policy(self, mr_enclave: str, mr_signer: str) -> r.QuotePolicy:
        """UploadQuotePolicy: pin an MRENCLAVE and an MRSIGNER (64 lower-case hex digits each)."""
        return self._run(c.upload_quote_policy(mr_enclave, mr_signer))

    def get_quote_policy(self, policy_id: str) -> r.QuotePolicy:
        """GetQuotePolicy; :class:`~ehsm_kms.client.errors.QuotePolicyNotFound` for an unknown id."""
        return self._run(c.get_quote_policy(policy_id))

    # ---------------------------------------------------------------- key versions, aliases, deletion
    def rotate_key(self, keyid: str) -> int:
        """RotateKey: a new primary version (returned); older versions still decrypt."""
        return self._run(c.rotate_key(keyid))

    def list_key_versions(self, keyid: str) -> r.KeyVersions:
        return self._run(c.list_key_versions(keyid))

    def re_encrypt(
        self,
        keyid: str,
        ciphertext: Bytes,
        *,
        aad: Bytes | None = None,
        destination_keyid: str | None = None,
        destination_aad: Bytes | None = None,
    ) -> r.ReEncrypted:
        """ReEncrypt a ciphertext of ``keyid`` under the primary version of ``destination_keyid`` (default: the
        same key), without the plaintext leaving the server."""
        return self._run(c.re_encrypt(keyid, ciphertext, aad, destination_keyid, destination_aad))

    def describe_key(self, keyid: str) -> r.KeyDescription:
        return self._run(c.describe_key(keyid))

    def create_alias(self, keyid: str, alias: str) -> r.Alias:
        """CreateAlias: ``alias`` names ``keyid`` wherever a keyid is taken."""
        return self._run(c.create_alias(keyid, alias))

    def update_alias(self, keyid: str, alias: str) -> r.Alias:
        """UpdateAlias: point ``alias`` at another key."""
        return self._run(c.update_alias(keyid, alias))

    def delete_alias(self, alias: str) -> None:
        self._run(c.delete_alias(alias))

    def list_aliases(self) -> tuple[r.Alias, ...]:
        return self._run(c.list_aliases())

    def schedule_key_deletion(self, keyid: str, *, pending_window_days: int | None = None) -> r.KeyDeletion:
        """ScheduleKeyDeletion: the key is unusable at once and deleted after 7..30 days (server default 30)."""
        return self._run(c.schedule_key_deletion(keyid, pending_window_days))

    def cancel_key_deletion(self, keyid: str) -> None:
        """CancelKeyDeletion: the key is back in the state it had (enabled or disabled)."""
        self._run(c.cancel_key_deletion(keyid))

    def set_min_decrypt_version(self, keyid: str, version: int) -> int:
        """SetMinDecryptVersion: versions below ``version`` no longer decrypt (it can be lowered again)."""
        return self._run(c.set_min_decrypt_version(keyid, version))

    def update_key_rotation(self, keyid: str, rotation_period_days: int) -> r.RotationSchedule:
        """UpdateKeyRotation: rotate automatically every ``rotation_period_days`` days (0: stop)."""
        return self._run(c.update_key_rotation(keyid, rotation_period_days))

    def update_key_description(self, keyid: str, description: str | None = None) -> None:
        """UpdateKeyDescription; no description removes it."""
        self._run(c.update_key_description(keyid, description))
