"""One builder per action: the payload to send and how to read the result, shared by ``Client`` and ``AsyncClient``.

A builder does the client's half of the contract (base64 of binary values, wire names of enums, dropping absent
and empty fields, which the server's sign string drops too) and returns a :class:`Call`; the clients only send it.
``safe`` marks the actions that may be sent again after a connection failure: reads and pure cryptography. Nothing
that creates, imports, changes or deletes anything is ever repeated by the SDK.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ehsm_kms.client import results as r
from ehsm_kms.client.errors import QuotePolicyNotFound, ResponseError, SecretNotFound

T = TypeVar("T")
Bytes = bytes | bytearray | memoryview
Name = str | enum.Enum

SAFE_ACTIONS: frozenset[str] = frozenset(
    {
        "GetVersion",
        "ListKey",
        "Encrypt",
        "Decrypt",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "Sign",
        "Verify",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ExportDataKey",
        "GetPublicKey",
        "GenerateRandom",
        "GenerateMac",
        "VerifyMac",
        "ListSecretVersionIds",
        "ListSecrets",
        "DescribeSecret",
        "GetSecretValue",
        "GenerateQuote",
        "VerifyQuote",
        "GetQuotePolicy",
        "ListKeyVersions",
        "ReEncrypt",
        "DescribeKey",
        "ListAliases",
        "AttestNode",
        "AdminListApps",
        "AdminShowApp",
    }
)
"""Actions the SDK may repeat after a connection failure (each retry is signed afresh)."""

_SIGN_USAGE_FAMILIES = ("EH_EC_", "EH_HMAC")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    action: str
    payload: dict[str, Any] | None
    parse: Callable[[Mapping[str, Any]], T]
    method: str = "POST"
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return self.action in SAFE_ACTIONS

    @property
    def signed(self) -> bool:
        return self.method == "POST"


# ---------------------------------------------------------------- value helpers
def name(value: Name) -> str:
    """The wire name of an enum member (``KeySpec.EH_AES_GCM_256`` or the string itself)."""
    return value.name if isinstance(value, enum.Enum) else str(value)


def _bytes(value: Bytes, what: str) -> bytes:
    if isinstance(value, str) or not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__} (encode text first)")
    return bytes(value)


def b64(value: Bytes, what: str) -> str:
    return base64.b64encode(_bytes(value, what)).decode("ascii")


def b64_or_none(value: Bytes | None, what: str) -> str | None:
    return None if value is None else b64(value, what)


def _text(value: str | Bytes, what: str) -> str:
    """Secret names, data and descriptions are strings on the wire; bytes are taken as UTF-8."""
    if isinstance(value, str):
        return value
    try:
        return _bytes(value, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} must be text (UTF-8); base64-encode binary secrets") from None


def clean(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without absent (None) and empty-string fields: the server's sign string skips them, so a
    client that signs them (as the original Python SDK signs ``aad=""``) gets ``sign error``."""
    return {k: v for k, v in payload.items() if v is not None and v != ""}


def _post(action: str, payload: Mapping[str, Any] | None, parse: Callable[[Mapping[str, Any]], T]) -> Call[T]:
    return Call(action, None if payload is None else clean(payload), parse)


def _nothing(result: Mapping[str, Any]) -> None:
    return None


# ---------------------------------------------------------------- app
def get_version() -> Call[r.Version]:
    def parse(res: Mapping[str, Any]) -> r.Version:
        server = res.get("server")
        return r.Version(
            r.text(res, "version", "GetVersion"),
            r.text(res, "git_sha", "GetVersion"),
            server if isinstance(server, str) else None,
        )

    return Call("GetVersion", None, parse, method="GET")


def enroll(token: str | None) -> Call[r.Enrollment]:
    def parse(res: Mapping[str, Any]) -> r.Enrollment:
        return r.Enrollment(r.text(res, "appid", "Enroll"), r.text(res, "apikey", "Enroll"))

    return Call("Enroll", None, parse, method="GET", query={"token": token} if token else {})


# ---------------------------------------------------------------- keys
def default_usage(keyspec: str) -> str:
    """EC and HMAC keys sign (or MAC) by default; every other spec encrypts."""
    if keyspec.startswith(_SIGN_USAGE_FAMILIES):
        return "EH_KEYUSAGE_SIGN_VERIFY"
    return "EH_KEYUSAGE_ENCRYPT_DECRYPT"


def create_key(keyspec: Name, origin: Name, keyusage: Name | None) -> Call[str]:
    spec = name(keyspec)
    usage = name(keyusage) if keyusage is not None else default_usage(spec)
    payload = {"keyspec": spec, "origin": name(origin), "keyusage": usage}
    return _post("CreateKey", payload, lambda res: r.text(res, "keyid", "CreateKey"))


def list_keys() -> Call[tuple[r.KeyInfo, ...]]:
    def parse(res: Mapping[str, Any]) -> tuple[r.KeyInfo, ...]:
        rows = r.need(res, "list", "ListKey")
        if not isinstance(rows, list):
            raise ResponseError("ListKey: 'list' is not a list")
        out = []
        for row in rows:
            if not isinstance(row, dict):
                raise ResponseError("ListKey: a row is not an object")
            state = row.get("keyState")
            out.append(
                r.KeyInfo(
                    keyid=r.text(row, "keyid", "ListKey"),
                    keyspec=str(row.get("keyspec", "")),
                    key_state=state if isinstance(state, int) and not isinstance(state, bool) else 0,
                    creation_date=r.millis(row.get("creationDate")),
                    expire_time=r.millis(row.get("expireTime")),
                    alias=str(row.get("alias") or ""),
                )
            )
        return tuple(out)

    return _post("ListKey", None, parse)


def key_action(action: str, keyid: str) -> Call[None]:
    return _post(action, {"keyid": keyid}, _nothing)


def delete_all_keys() -> Call[None]:
    return _post("DeleteAllKey", None, _nothing)


def get_public_key(keyid: str) -> Call[str]:
    return _post("GetPublicKey", {"keyid": keyid}, lambda res: r.text(res, "pubkey", "GetPublicKey"))


def get_parameters_for_import(keyid: str, wrapping_keyspec: Name) -> Call[r.ImportParameters]:
    def parse(res: Mapping[str, Any]) -> r.ImportParameters:
        action = "GetParametersForImport"
        return r.ImportParameters(keyid, r.text(res, "pubkey", action), r.text(res, "importToken", action))

    return _post("GetParametersForImport", {"keyid": keyid, "keyspec": name(wrapping_keyspec)}, parse)


def import_key_material(keyid: str, key_material: Bytes, import_token: str, padding_mode: Name) -> Call[bool]:
    payload = {
        "keyid": keyid,
        "padding_mode": name(padding_mode),
        "key_material": b64(key_material, "key_material"),
        "importToken": import_token,
    }
    return _post("ImportKeyMaterial", payload, lambda res: r.flag(res, "result", "ImportKeyMaterial"))


# ---------------------------------------------------------------- cryptography
def encrypt(keyid: str, plaintext: Bytes, aad: Bytes | None) -> Call[bytes]:
    payload = {"keyid": keyid, "plaintext": b64(plaintext, "plaintext"), "aad": b64_or_none(aad, "aad")}
    return _post("Encrypt", payload, lambda res: r.unb64(res, "ciphertext", "Encrypt"))


def decrypt(keyid: str, ciphertext: Bytes, aad: Bytes | None) -> Call[bytes]:
    payload = {"keyid": keyid, "ciphertext": b64(ciphertext, "ciphertext"), "aad": b64_or_none(aad, "aad")}
    return _post("Decrypt", payload, lambda res: r.unb64(res, "plaintext", "Decrypt"))


def asymmetric_encrypt(keyid: str, plaintext: Bytes, padding_mode: Name) -> Call[bytes]:
    payload = {"keyid": keyid, "plaintext": b64(plaintext, "plaintext"), "padding_mode": name(padding_mode)}
    return _post("AsymmetricEncrypt", payload, lambda res: r.unb64(res, "ciphertext", "AsymmetricEncrypt"))


def asymmetric_decrypt(keyid: str, ciphertext: Bytes, padding_mode: Name) -> Call[bytes]:
    payload = {"keyid": keyid, "ciphertext": b64(ciphertext, "ciphertext"), "padding_mode": name(padding_mode)}
    return _post("AsymmetricDecrypt", payload, lambda res: r.unb64(res, "plaintext", "AsymmetricDecrypt"))


def _sign_payload(
    keyid: str, message: Bytes, digest_mode: Name, padding_mode: Name, message_type: Name
) -> dict[str, Any]:
    return {
        "keyid": keyid,
        "message": b64(message, "message"),
        "message_type": name(message_type),
        "digest_mode": name(digest_mode),
        "padding_mode": name(padding_mode),
    }


def sign(keyid: str, message: Bytes, digest_mode: Name, padding_mode: Name, message_type: Name) -> Call[bytes]:
    payload = _sign_payload(keyid, message, digest_mode, padding_mode, message_type)
    return _post("Sign", payload, lambda res: r.unb64(res, "signature", "Sign"))


def verify(
    keyid: str, message: Bytes, signature: Bytes, digest_mode: Name, padding_mode: Name, message_type: Name
) -> Call[bool]:
    payload = _sign_payload(keyid, message, digest_mode, padding_mode, message_type)
    payload["signature"] = b64(signature, "signature")
    return _post("Verify", payload, lambda res: r.flag(res, "result", "Verify"))


def generate_data_key(keyid: str, keylen: int, aad: Bytes | None) -> Call[r.DataKey]:
    def parse(res: Mapping[str, Any]) -> r.DataKey:
        return r.DataKey(r.unb64(res, "plaintext", "GenerateDataKey"), r.unb64(res, "ciphertext", "GenerateDataKey"))

    return _post("GenerateDataKey", {"keyid": keyid, "keylen": keylen, "aad": b64_or_none(aad, "aad")}, parse)


def generate_data_key_without_plaintext(keyid: str, keylen: int, aad: Bytes | None) -> Call[bytes]:
    action = "GenerateDataKeyWithoutPlaintext"
    payload = {"keyid": keyid, "keylen": keylen, "aad": b64_or_none(aad, "aad")}
    return _post(action, payload, lambda res: r.unb64(res, "ciphertext", action))


def export_data_key(keyid: str, ukeyid: str, ciphertext: Bytes, aad: Bytes | None) -> Call[bytes]:
    payload = {
        "keyid": keyid,
        "ukeyid": ukeyid,
        "olddatakey_base": b64(ciphertext, "ciphertext"),
        "aad": b64_or_none(aad, "aad"),
    }
    return _post("ExportDataKey", payload, lambda res: r.unb64(res, "newdatakey", "ExportDataKey"))


def generate_random(length: int) -> Call[bytes]:
    return _post("GenerateRandom", {"length": length}, lambda res: r.unb64(res, "random", "GenerateRandom"))


def generate_mac(keyid: str, message: Bytes, digest_mode: Name | None) -> Call[bytes]:
    payload = {
        "keyid": keyid,
        "message": b64(message, "message"),
        "digest_mode": None if digest_mode is None else name(digest_mode),
    }
    return _post("GenerateMac", payload, lambda res: r.unb64(res, "mac", "GenerateMac"))


def verify_mac(keyid: str, message: Bytes, mac: Bytes, digest_mode: Name | None) -> Call[bool]:
    payload = {
        "keyid": keyid,
        "message": b64(message, "message"),
        "digest_mode": None if digest_mode is None else name(digest_mode),
        "mac": b64(mac, "mac"),
    }
    return _post("VerifyMac", payload, lambda res: r.flag(res, "result", "VerifyMac"))


# ---------------------------------------------------------------- secret manager (contract section 6)
def create_secret(
    secret_name: str,
    data: str | Bytes,
    encryption_key_id: str | None,
    description: str | None,
    rotation_interval: str | None,
) -> Call[None]:
    payload = {
        "secretName": secret_name,
        "secretData": _text(data, "secret data"),
        "encryptionKeyId": encryption_key_id,
        "description": description,
        "rotationInterval": rotation_interval,
    }
    return _post("CreateSecret", payload, _nothing)


def update_secret_description(secret_name: str, description: str | None) -> Call[None]:
    return _post("UpdateSecretDesc", {"secretName": secret_name, "description": description}, _nothing)


def put_secret_value(secret_name: str, data: str | Bytes) -> Call[None]:
    payload = {"secretName": secret_name, "secretData": _text(data, "secret data")}
    return _post("PutSecretValue", payload, _nothing)


def list_secret_version_ids(secret_name: str) -> Call[r.SecretVersions]:
    action = "ListSecretVersionIds"

    def parse(res: Mapping[str, Any]) -> r.SecretVersions:
        rows = res.get("versionIds") or []
        if not isinstance(rows, list):
            raise ResponseError(f"{action}: 'versionIds' is not a list")
        versions = tuple(
            sorted(
                (r.SecretVersion(r.integer(row, "versionId", action), r.millis(row.get("createTime"))) for row in rows),
                key=lambda v: v.version_id,
            )
        )
        count = res.get("totalCount")
        total = count if isinstance(count, int) and not isinstance(count, bool) else len(versions)
        return r.SecretVersions(str(res.get("secretName") or secret_name), total, versions)

    return _post(action, {"secretName": secret_name}, parse)


def list_secrets(secret_name: str | None) -> Call[tuple[r.SecretSummary, ...]]:
    action = "ListSecrets"

    def parse(res: Mapping[str, Any]) -> tuple[r.SecretSummary, ...]:
        rows = res.get("secretList") or []
        if not isinstance(rows, list):
            raise ResponseError(f"{action}: 'secretList' is not a list")
        return tuple(
            r.SecretSummary(
                name=r.text(row, "secretName", action),
                create_time=r.millis(row.get("createTime")),
                description=r.optional_text(row, "description"),
                planned_delete_time=r.millis(row.get("plannedDeleteTime")),
            )
            for row in rows
        )

    return _post(action, {"secretName": secret_name}, parse)


def describe_secret(secret_name: str) -> Call[r.SecretDescription]:
    def parse(res: Mapping[str, Any]) -> r.SecretDescription:
        if "secretName" not in res:  # the original answers an unknown name with 200 and {}
            raise SecretNotFound(f"secret {secret_name!r} does not exist")
        return r.SecretDescription(
            name=r.text(res, "secretName", "DescribeSecret"),
            create_time=r.millis(res.get("createTime")),
            description=r.optional_text(res, "description"),
            planned_delete_time=r.millis(res.get("plannedDeleteTime")),
            rotation_interval=r.optional_text(res, "rotationInterval"),
            last_rotation_date=r.millis(res.get("lastRotationDate")),
            next_rotation_date=r.millis(res.get("nextRotationDate")),
        )

    return _post("DescribeSecret", {"secretName": secret_name}, parse)


def delete_secret(secret_name: str, recovery_period: int | None, force: bool) -> Call[None]:
    payload = {
        "secretName": secret_name,
        "recoveryPeriod": recovery_period,
        "forceDelete": "true" if force else None,
    }
    return _post("DeleteSecret", payload, _nothing)


def get_secret_value(secret_name: str, version_id: int | None) -> Call[r.SecretValue]:
    action = "GetSecretValue"

    def parse(res: Mapping[str, Any]) -> r.SecretValue:
        if "secretData" not in res:  # the original answers an unknown version with 200 and {}
            which = f"version {version_id} of " if version_id is not None else ""
            raise SecretNotFound(f"{which}secret {secret_name!r} does not exist")
        return r.SecretValue(
            name=str(res.get("secretName") or secret_name),
            data=r.text(res, "secretData", action),
            version_id=r.integer(res, "versionId", action),
            create_time=r.millis(res.get("createTime")),
        )

    return _post(action, {"secretName": secret_name, "versionId": version_id}, parse)


def restore_secret(secret_name: str) -> Call[None]:
    return _post("RestoreSecret", {"secretName": secret_name}, _nothing)


# ---------------------------------------------------------------- remote attestation (contract section 7)
def generate_quote(challenge: Bytes) -> Call[r.Quote]:
    def parse(res: Mapping[str, Any]) -> r.Quote:
        return r.Quote(r.text(res, "challenge", "GenerateQuote"), r.unb64(res, "quote", "GenerateQuote"))

    return _post("GenerateQuote", {"challenge": b64(challenge, "challenge")}, parse)


def verify_quote(quote: Bytes, nonce: Bytes, policy_id: str | None) -> Call[r.QuoteVerification]:
    action = "VerifyQuote"

    def parse(res: Mapping[str, Any]) -> r.QuoteVerification:
        return r.QuoteVerification(
            nonce=r.text(res, "nonce", action),
            result=r.integer(res, "result", action),
            mr_enclave=r.text(res, "mr_enclave", action),
            mr_signer=r.text(res, "mr_signer", action),
            sign=r.text(res, "sign", action),
        )

    payload = {"quote": b64(quote, "quote"), "nonce": b64(nonce, "nonce"), "policyId": policy_id}
    return _post(action, payload, parse)


def upload_quote_policy(mr_enclave: str, mr_signer: str) -> Call[r.QuotePolicy]:
    def parse(res: Mapping[str, Any]) -> r.QuotePolicy:
        return r.QuotePolicy(r.text(res, "policyId", "UploadQuotePolicy"), mr_enclave, mr_signer)

    return _post("UploadQuotePolicy", {"mr_enclave": mr_enclave, "mr_signer": mr_signer}, parse)


def get_quote_policy(policy_id: str) -> Call[r.QuotePolicy]:
    action = "GetQuotePolicy"

    def parse(res: Mapping[str, Any]) -> r.QuotePolicy:
        if "mr_enclave" not in res:  # the original answers an unknown id with 200 and only the policyId
            raise QuotePolicyNotFound(f"quote policy {policy_id!r} does not exist")
        return r.QuotePolicy(
            policy_id=r.text(res, "policyId", action),
            mr_enclave=r.text(res, "mr_enclave", action),
            mr_signer=r.text(res, "mr_signer", action),
            create_time=r.millis(res.get("createTime")),
        )

    return _post(action, {"policyId": policy_id}, parse)


# ---------------------------------------------------------------- key versions, aliases, deletion (docs/beyond.md)
def _list(res: Mapping[str, Any], key: str, action: str) -> list[Mapping[str, Any]]:
    rows = res.get(key) or []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ResponseError(f"{action}: {key!r} is not a list of objects")
    return rows


def rotate_key(keyid: str) -> Call[int]:
    return _post("RotateKey", {"keyid": keyid}, lambda res: r.integer(res, "keyversion", "RotateKey"))


def list_key_versions(keyid: str) -> Call[r.KeyVersions]:
    action = "ListKeyVersions"

    def parse(res: Mapping[str, Any]) -> r.KeyVersions:
        versions = tuple(
            r.KeyVersion(
                version=r.integer(row, "keyversion", action),
                creation_date=r.millis(row.get("creationDate")),
                primary=row.get("primary") is True,
                retired=row.get("retired") is True,
            )
            for row in _list(res, "list", action)
        )
        return r.KeyVersions(
            keyid=r.text(res, "keyid", action),
            primary_version=r.integer(res, "primaryVersion", action),
            min_decrypt_version=r.integer(res, "minDecryptVersion", action),
            versions=tuple(sorted(versions, key=lambda v: v.version)),
        )

    return _post(action, {"keyid": keyid}, parse)


def re_encrypt(
    keyid: str, ciphertext: Bytes, aad: Bytes | None, destination_keyid: str | None, destination_aad: Bytes | None
) -> Call[r.ReEncrypted]:
    action = "ReEncrypt"

    def parse(res: Mapping[str, Any]) -> r.ReEncrypted:
        return r.ReEncrypted(
            r.unb64(res, "ciphertext", action), r.text(res, "keyid", action), r.integer(res, "keyversion", action)
        )

    payload = {
        "keyid": keyid,
        "ciphertext": b64(ciphertext, "ciphertext"),
        "aad": b64_or_none(aad, "aad"),
        "destination_keyid": destination_keyid,
        "destination_aad": b64_or_none(destination_aad, "destination_aad"),
    }
    return _post(action, payload, parse)


def describe_key(keyid: str) -> Call[r.KeyDescription]:
    action = "DescribeKey"

    def parse(res: Mapping[str, Any]) -> r.KeyDescription:
        versions = res.get("versions") or []
        if not isinstance(versions, list) or not all(isinstance(v, int) for v in versions):
            raise ResponseError(f"{action}: 'versions' is not a list of integers")
        period = res.get("rotationPeriod")
        return r.KeyDescription(
            keyid=r.text(res, "keyid", action),
            keyspec=r.text(res, "keyspec", action),
            keyusage=str(res.get("keyusage") or ""),
            origin=str(res.get("origin") or ""),
            key_state=r.integer(res, "keyState", action),
            creation_date=r.millis(res.get("creationDate")),
            expire_time=r.millis(res.get("expireTime")) or None,
            primary_version=r.integer(res, "primaryVersion", action),
            min_decrypt_version=r.integer(res, "minDecryptVersion", action),
            versions=tuple(versions),
            alias=r.optional_text(res, "alias"),
            description=r.optional_text(res, "description"),
            rotation_period=period if isinstance(period, int) and not isinstance(period, bool) else 0,
            next_rotation_date=r.millis(res.get("nextRotationDate")) or None,
            deletion_date=r.millis(res.get("deletionDate")) or None,
        )

    return _post(action, {"keyid": keyid}, parse)


def _alias(action: str) -> Callable[[Mapping[str, Any]], r.Alias]:
    return lambda res: r.Alias(r.text(res, "alias", action), r.text(res, "keyid", action))


def create_alias(keyid: str, alias: str) -> Call[r.Alias]:
    return _post("CreateAlias", {"keyid": keyid, "alias": alias}, _alias("CreateAlias"))


def update_alias(keyid: str, alias: str) -> Call[r.Alias]:
    return _post("UpdateAlias", {"keyid": keyid, "alias": alias}, _alias("UpdateAlias"))


def delete_alias(alias: str) -> Call[None]:
    return _post("DeleteAlias", {"alias": alias}, _nothing)


def list_aliases() -> Call[tuple[r.Alias, ...]]:
    def parse(res: Mapping[str, Any]) -> tuple[r.Alias, ...]:
        return tuple(_alias("ListAliases")(row) for row in _list(res, "list", "ListAliases"))

    return _post("ListAliases", None, parse)


def schedule_key_deletion(keyid: str, pending_window_days: int | None) -> Call[r.KeyDeletion]:
    action = "ScheduleKeyDeletion"

    def parse(res: Mapping[str, Any]) -> r.KeyDeletion:
        return r.KeyDeletion(
            r.text(res, "keyid", action), r.millis(res.get("deletionDate")), r.integer(res, "keyState", action)
        )

    return _post(action, {"keyid": keyid, "pendingWindowInDays": pending_window_days}, parse)


def cancel_key_deletion(keyid: str) -> Call[None]:
    return _post("CancelKeyDeletion", {"keyid": keyid}, _nothing)


def set_min_decrypt_version(keyid: str, version: int) -> Call[int]:
    action = "SetMinDecryptVersion"
    payload = {"keyid": keyid, "minDecryptVersion": version}
    return _post(action, payload, lambda res: r.integer(res, "minDecryptVersion", action))


def update_key_rotation(keyid: str, rotation_period_days: int) -> Call[r.RotationSchedule]:
    action = "UpdateKeyRotation"

    def parse(res: Mapping[str, Any]) -> r.RotationSchedule:
        return r.RotationSchedule(
            r.text(res, "keyid", action),
            r.integer(res, "rotationPeriod", action),
            r.millis(res.get("nextRotationDate")) or None,
        )

    # rotationPeriod 0 (turn rotation off) must be sent: clean() drops only None and "".
    return _post(action, {"keyid": keyid, "rotationPeriod": rotation_period_days}, parse)


def update_key_description(keyid: str, description: str | None) -> Call[None]:
    return _post("UpdateKeyDescription", {"keyid": keyid, "description": description}, _nothing)


# ---------------------------------------------------------------- attested enrollment (docs/attestation.md)
def attest_node(nonce: Bytes) -> Call[r.NodeEvidence]:
    action = "AttestNode"
    sent = b64(nonce, "nonce")

    def parse(res: Mapping[str, Any]) -> r.NodeEvidence:
        if r.text(res, "nonce", action) != sent:
            raise ResponseError(f"{action}: the answer is not for this request's nonce")
        return r.NodeEvidence(r.text(res, "kind", action), r.unb64(res, "evidence", action))

    return Call(action, None, parse, method="GET", query={"nonce": sent})


# ---------------------------------------------------------------- administration, signed with the admin credential
def _app_info(action: str) -> Callable[[Mapping[str, Any]], r.AppInfo]:
    def parse(row: Mapping[str, Any]) -> r.AppInfo:
        keys = row.get("keys")
        return r.AppInfo(
            appid=r.text(row, "appid", action),
            state=r.text(row, "state", action),
            created_date=r.millis(row.get("createdDate")),
            keys=keys if isinstance(keys, int) and not isinstance(keys, bool) else None,
        )

    return parse


def admin_list_apps() -> Call[tuple[r.AppInfo, ...]]:
    def parse(res: Mapping[str, Any]) -> tuple[r.AppInfo, ...]:
        return tuple(_app_info("AdminListApps")(row) for row in _list(res, "list", "AdminListApps"))

    return _post("AdminListApps", None, parse)


def admin_app_action(action: str, appid: str) -> Call[r.AppInfo]:
    """AdminShowApp, AdminRevokeApp or AdminRestoreApp: the app as it is afterwards."""
    return _post(action, {"appid": appid}, _app_info(action))


def admin_rotate_apikey(appid: str) -> Call[r.NewApiKey]:
    action = "AdminRotateApiKey"

    def parse(res: Mapping[str, Any]) -> r.NewApiKey:
        return r.NewApiKey(r.text(res, "appid", action), r.text(res, "apikey", action))

    return _post(action, {"appid": appid}, parse)


def admin_issue_enroll_token(ttl_hours: int | None) -> Call[r.EnrollToken]:
    action = "AdminIssueEnrollToken"

    def parse(res: Mapping[str, Any]) -> r.EnrollToken:
        return r.EnrollToken(r.text(res, "token", action), r.millis(res.get("expireTime")))

    return _post(action, {"ttlHours": ttl_hours}, parse)


# ---------------------------------------------------------------- any action
def raw(action: str, payload: Mapping[str, Any] | None) -> Call[dict[str, Any]]:
    return _post(action, payload, dict)
