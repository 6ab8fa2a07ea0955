"""``AsyncClient``: the asyncio SDK; the same methods as :class:`ehsm_kms.client.Client`, awaited."""

from __future__ import annotations

import asyncio
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


class AsyncSession(ClientBase):
    """The asyncio half shared by :class:`AsyncClient` and :class:`~ehsm_kms.client.AsyncAdminClient`."""

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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
            verify=self._verify, timeout=self._timeout, limits=KEEPALIVE, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, http: httpx.AsyncClient, call: c.Call[Any]) -> httpx.Response:
        params, content, headers = self._request_parts(call)
        return await http.request(call.method, self._endpoint, params=params, content=content, headers=headers)

    async def _run(self, call: c.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._send(self._http, call)
            except httpx.HTTPError as exc:
                delay = self._retry_delay(call, exc, attempt)
                if delay is None:
                    raise self._failed(call, exc) from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return self._answer(call, response)

    async def _once(self, http: httpx.AsyncClient, call: c.Call[T]) -> tuple[httpx.Response, T]:
        """One attempt, no retry (attested enrollment: the connection matters)."""
        try:
            response = await self._send(http, call)
        except httpx.HTTPError as exc:
            raise self._failed(call, exc) from exc
        return response, self._answer(call, response)


class AsyncClient(AsyncSession):
    """The asyncio twin of :class:`~ehsm_kms.client.Client`: same arguments, same methods, each a coroutine.

    ``transport`` is any ``httpx.AsyncBaseTransport``; ``httpx.ASGITransport(app)`` runs the server in-process.
    """

    # ---------------------------------------------------------------- app
    async def get_version(self) -> r.Version:
        """GetVersion (no credentials needed)."""
        return await self._run(c.get_version())

    async def enroll(
        self,
        token: str | None = None,
        *,
        attest: attested.PolicySource | None = None,
        verifier: attested.Verifier | None = None,
    ) -> r.Enrollment:
        """Enroll a new app (``attest``: only from a node whose evidence verifies; see :meth:`Client.enroll`)."""
        if attest is None:
            made = await self._run(c.enroll(token))
        else:
            made = await self._attested_enroll(token, attest, verifier)
        if not self.has_credentials:
            self.set_credentials(made.appid, made.apikey)
        return made

    async def _attested_enroll(
        self, token: str | None, source: attested.PolicySource, verifier: attested.Verifier | None
    ) -> r.Enrollment:
        check = attested.AttestedEnrollment.start(self._endpoint, source, verifier)
        async with httpx.AsyncClient(
            verify=self._verify, timeout=self._timeout, limits=attested.ONE_CONNECTION, transport=self._transport
        ) as http:
            response, evidence = await self._once(http, c.attest_node(check.nonce))
            # The verifier may talk to a TPM library or fetch collateral: off the event loop.
            await asyncio.to_thread(check.check_evidence, response, evidence)
            response, made = await self._once(http, c.enroll(token))
            return check.accept(response, made)

    async def attest_node(self, nonce: Bytes) -> r.NodeEvidence:
        """AttestNode: the node's evidence over ``nonce`` and its TLS key, unchecked."""
        return await self._run(c.attest_node(nonce))

    async def call(self, action: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any action by name, signed like every other; the ``result`` object as the server sent it."""
        return await self._run(c.raw(action, payload))

    # ---------------------------------------------------------------- keys
    async def create_key(
        self,
        keyspec: Name = "EH_AES_GCM_256",
        origin: Name = "EH_INTERNAL_KEY",
        keyusage: Name | None = None,
    ) -> str:
        """CreateKey; the new keyid. ``keyusage`` defaults to SIGN_VERIFY for EC and HMAC keys, else
        ENCRYPT_DECRYPT."""
        return await self._run(c.create_key(keyspec, origin, keyusage))

    async def list_keys(self) -> tuple[r.KeyInfo, ...]:
        """ListKey: this app's keys."""
        return await self._run(c.list_keys())

    async def enable_key(self, keyid: str) -> None:
        await self._run(c.key_action("EnableKey", keyid))

    async def disable_key(self, keyid: str) -> None:
        await self._run(c.key_action("DisableKey", keyid))

    async def delete_key(self, keyid: str) -> None:
        """DeleteKey: the key and everything encrypted under it is gone for good."""
        await self._run(c.key_action("DeleteKey", keyid))

    async def delete_all_keys(self) -> None:
        """DeleteAllKey: every key of this app."""
        await self._run(c.delete_all_keys())

    async def get_public_key(self, keyid: str) -> str:
        """GetPublicKey: the PEM public key of an RSA, EC or SM2 key."""
        return await self._run(c.get_public_key(keyid))

    async def get_parameters_for_import(self, keyid: str, wrapping_keyspec: Name = "EH_RSA_2048") -> r.ImportParameters:
        """BYOK step 1, for a key created with origin EH_EXTERNAL_KEY."""
        return await self._run(c.get_parameters_for_import(keyid, wrapping_keyspec))

    async def import_key_material(
        self, keyid: str, key_material: Bytes, import_token: str, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP"
    ) -> bool:
        """BYOK step 2: ``key_material`` is the raw key already wrapped with the step-1 public key."""
        return await self._run(c.import_key_material(keyid, key_material, import_token, padding_mode))

    async def import_key(
        self,
        keyid: str,
        material: Bytes,
        *,
        wrapping_keyspec: Name = "EH_RSA_2048",
        padding_mode: Name = "EH_RSA_PKCS1_OAEP",
    ) -> bool:
        """Both BYOK steps: wrap the raw ``material`` here with the server's one-time public key and import it."""
        from ehsm_kms.core.stream import wrap_key_material

        params = await self.get_parameters_for_import(keyid, wrapping_keyspec)
        wrapped = wrap_key_material(params.pubkey, bytes(material), c.name(padding_mode))
        return await self.import_key_material(keyid, wrapped, params.import_token, padding_mode=padding_mode)

    # ---------------------------------------------------------------- cryptography
    async def encrypt(self, keyid: str, plaintext: Bytes, *, aad: Bytes | None = None) -> bytes:
        """Encrypt up to 6 KiB under a symmetric key (larger data: :mod:`ehsm_kms.client.envelope`)."""
        return await self._run(c.encrypt(keyid, plaintext, aad))

    async def decrypt(self, keyid: str, ciphertext: Bytes, *, aad: Bytes | None = None) -> bytes:
        return await self._run(c.decrypt(keyid, ciphertext, aad))

    async def asymmetric_encrypt(
        self, keyid: str, plaintext: Bytes, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP"
    ) -> bytes:
        """RSA (OAEP-SHA-256 or PKCS#1 v1.5) or SM2 encryption (SM2 ignores the padding mode)."""
        return await self._run(c.asymmetric_encrypt(keyid, plaintext, padding_mode))

    async def asymmetric_decrypt(
        self, keyid: str, ciphertext: Bytes, *, padding_mode: Name = "EH_RSA_PKCS1_OAEP"
    ) -> bytes:
        return await self._run(c.asymmetric_decrypt(keyid, ciphertext, padding_mode))

    async def sign(
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
        return await self._run(c.sign(keyid, message, digest_mode, padding_mode, message_type))

    async def verify(
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
        return await self._run(c.verify(keyid, message, signature, digest_mode, padding_mode, message_type))

    async def generate_data_key(self, keyid: str, keylen: int = 32, *, aad: Bytes | None = None) -> r.DataKey:
        """A fresh data key, in plaintext and encrypted under ``keyid`` (``decrypt`` recovers it)."""
        return await self._run(c.generate_data_key(keyid, keylen, aad))

    async def generate_data_key_without_plaintext(
        self, keyid: str, keylen: int = 32, *, aad: Bytes | None = None
    ) -> bytes:
        """Only the encrypted data key (for whoever will ``decrypt`` it later)."""
        return await self._run(c.generate_data_key_without_plaintext(keyid, keylen, aad))

    async def export_data_key(self, keyid: str, ukeyid: str, ciphertext: Bytes, *, aad: Bytes | None = None) -> bytes:
        """Re-encrypt a data key from ``keyid`` to the RSA or SM2 key ``ukeyid`` (RSA: always OAEP-SHA-256)."""
        return await self._run(c.export_data_key(keyid, ukeyid, ciphertext, aad))

    async def generate_random(self, length: int = 32) -> bytes:
        """``length`` (1..1024) random bytes from the server's core."""
        return await self._run(c.generate_random(length))

    async def generate_mac(self, keyid: str, message: Bytes, *, digest_mode: Name | None = None) -> bytes:
        """HMAC of ``message`` with an EH_HMAC key (SHA-256 unless ``digest_mode`` says otherwise)."""
        return await self._run(c.generate_mac(keyid, message, digest_mode))

    async def verify_mac(self, keyid: str, message: Bytes, mac: Bytes, *, digest_mode: Name | None = None) -> bool:
        return await self._run(c.verify_mac(keyid, message, mac, digest_mode))

    # ---------------------------------------------------------------- secret manager
    async def create_secret(
        self,
        name: str,
        data: str | Bytes,
        *,
        encryption_key_id: str | None = None,
        description: str | None = None,
        rotation_interval: str | None = None,
    ) -> None:
        """CreateSecret: version 1 of ``name`` (text; bytes are taken as UTF-8)."""
        await self._run(c.create_secret(name, data, encryption_key_id, description, rotation_interval))

    async def update_secret_description(self, name: str, description: str | None = None) -> None:
        """UpdateSecretDesc; no description removes it."""
        await self._run(c.update_secret_description(name, description))

    async def put_secret_value(self, name: str, data: str | Bytes) -> None:
        """PutSecretValue: a new current version."""
        await self._run(c.put_secret_value(name, data))

    async def list_secret_version_ids(self, name: str) -> r.SecretVersions:
        return await self._run(c.list_secret_version_ids(name))

    async def list_secrets(self, name: str | None = None) -> tuple[r.SecretSummary, ...]:
        return await self._run(c.list_secrets(name))

    async def describe_secret(self, name: str) -> r.SecretDescription:
        """DescribeSecret; :class:`~ehsm_kms.client.errors.SecretNotFound` for an unknown name."""
        return await self._run(c.describe_secret(name))

    async def delete_secret(self, name: str, *, recovery_period: int | None = None, force: bool = False) -> None:
        """DeleteSecret: scheduled after ``recovery_period`` days (server default 30), or at once with ``force``."""
        await self._run(c.delete_secret(name, recovery_period, force))

    async def get_secret_value(self, name: str, version_id: int | None = None) -> r.SecretValue:
        """GetSecretValue: the current version, or ``version_id``."""
        return await self._run(c.get_secret_value(name, version_id))

    async def restore_secret(self, name: str) -> None:
        """RestoreSecret: cancel a scheduled deletion."""
        await self._run(c.restore_secret(name))

    # ---------------------------------------------------------------- remote attestation
    async def generate_quote(self, challenge: Bytes) -> r.Quote:
        """GenerateQuote: the node's TEE evidence binding ``challenge``; a node without a TEE answers
        :class:`~ehsm_kms.errors.CryptoError` ("Server exception.")."""
        return await self._run(c.generate_quote(challenge))

    async def verify_quote(self, quote: Bytes, nonce: Bytes, *, policy_id: str | None = None) -> r.QuoteVerification:
        """VerifyQuote, against the stored policy ``policy_id`` if given. Check the result's ``ok``: a genuine quote
        of a TCB that is not up to date verifies too."""
        return await self._run(c.verify_quote(quote, nonce, policy_id))

    async def upload_quote_policy(self, mr_enclave: str, mr_signer: str) -> r.QuotePolicy:
        """UploadQuotePolicy: pin an MRENCLAVE and an MRSIGNER (64 lower-case hex digits each)."""
        return await self._run(c.upload_quote_policy(mr_enclave, mr_signer))

    async def get_quote_policy(self, policy_id: str) -> r.QuotePolicy:
        """GetQuotePolicy; :class:`~ehsm_kms.client.errors.QuotePolicyNotFound` for an unknown id."""
        return await self._run(c.get_quote_policy(policy_id))

    # ---------------------------------------------------------------- key versions, aliases, deletion
    async def rotate_key(self, keyid: str) -> int:
        """RotateKey: a new primary version (returned); older versions still decrypt."""
        return await self._run(c.rotate_key(keyid))

    async def list_key_versions(self, keyid: str) -> r.KeyVersions:
        return await self._run(c.list_key_versions(keyid))

    async def re_encrypt(
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
        return await self._run(c.re_encrypt(keyid, ciphertext, aad, destination_keyid, destination_aad))

    async def describe_key(self, keyid: str) -> r.KeyDescription:
        return await self._run(c.describe_key(keyid))

    async def create_alias(self, keyid: str, alias: str) -> r.Alias:
        """CreateAlias: ``alias`` names ``keyid`` wherever a keyid is taken."""
        return await self._run(c.create_alias(keyid, alias))

    async def update_alias(self, keyid: str, alias: str) -> r.Alias:
        """UpdateAlias: point ``alias`` at another key."""
        return await self._run(c.update_alias(keyid, alias))

    async def delete_alias(self, alias: str) -> None:
        await self._run(c.delete_alias(alias))

    async def list_aliases(self) -> tuple[r.Alias, ...]:
        return await self._run(c.list_aliases())

    async def schedule_key_deletion(self, keyid: str, *, pending_window_days: int | None = None) -> r.KeyDeletion:
        """ScheduleKeyDeletion: the key is unusable at once and deleted after 7..30 days (server default 30)."""
        return await self._run(c.schedule_key_deletion(keyid, pending_window_days))

    async def cancel_key_deletion(self, keyid: str) -> None:
        """CancelKeyDeletion: the key is back in the state it had (enabled or disabled)."""
        await self._run(c.cancel_key_deletion(keyid))

    async def set_min_decrypt_version(self, keyid: str, version: int) -> int:
        """SetMinDecryptVersion: versions below ``version`` no longer decrypt (it can be lowered again)."""
        return await self._run(c.set_min_decrypt_version(keyid, version))

    async def update_key_rotation(self, keyid: str, rotation_period_days: int) -> r.RotationSchedule:
        """UpdateKeyRotation: rotate automatically every ``rotation_period_days`` days (0: stop)."""
        return await self._run(c.update_key_rotation(keyid, rotation_period_days))

    async def update_key_description(self, keyid: str, description: str | None = None) -> None:
        """UpdateKeyDescription; no description removes it."""
        await self._run(c.update_key_description(keyid, description))
