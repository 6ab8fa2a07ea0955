"""The PKCS#11 sealer: the DK ring under an AES-256 key that never leaves an HSM.

The wrapping key is generated inside the token on the first seal (sensitive, not extractable, not modifiable,
encrypt/decrypt only) and found by its label afterwards; a key with that label that is extractable or not
sensitive is refused rather than trusted. Unsealing never creates a key. The token does AES-GCM itself
(CKM_AES_GCM, 96-bit nonce chosen here, 128-bit tag); SoftHSM2 and the usual vendor HSMs support it.

Body after the envelope header (:mod:`.base`)::

    offset  size  field
    0       1     mechanism (1 = CKM_AES_GCM with a 128-bit tag)
    1       12    nonce (random per seal)
    13      n+16  AES-GCM(token key, nonce, ring, aad = envelope header || body[0:13]) with its tag

python-pkcs11 keeps one library object per module path for the whole process, and the module reads its
configuration (SoftHSM2: ``SOFTHSM2_CONF``) when it is initialised; so this sealer holds no library, token or
session between calls: each seal or unseal opens one session, logs in, and closes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams

from ehsm_kms import errors
from ehsm_kms.core.sealers import base
from ehsm_kms.core.secret import SecretBytes

MECH_AES_GCM = 1
NONCE_SIZE = 12
TAG_SIZE = 16
DEFAULT_KEY_LABEL = "ehsm-kms-dk-wrap"

_PREFIX = 1 + NONCE_SIZE


class Pkcs11Sealer:
    name = "pkcs11"

    __slots__ = ("_pin", "key_label", "module_path", "token_label")

    def __init__(self, module_path: str, token_label: str, pin: str, key_label: str = DEFAULT_KEY_LABEL) -> None:
        if not module_path or not token_label or not key_label:
            raise errors.CoreStartError("the PKCS#11 sealer needs a module path, a token label and a key label")
        if not pin:
            raise errors.CoreStartError(f"no PIN given for PKCS#11 token '{token_label}'")
        self.module_path = module_path
        self.token_label = token_label
        self.key_label = key_label
        self._pin = SecretBytes(pin.encode("utf-8"))

    def __repr__(self) -> str:
        return (
            f"Pkcs11Sealer(module_path={self.module_path!r}, token_label={self.token_label!r}, "
            f"key_label={self.key_label!r}, pin=<hidden>)"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("a sealer cannot be pickled")

    def seal(self, data: bytes) -> bytes:
        head = base.header(self.name)
        nonce = os.urandom(NONCE_SIZE)
        prefix = bytes([MECH_AES_GCM]) + nonce
        with self._session(rw=True) as session:
            key = self._find_key(session)
            if key is None:
                key = self._create_key(session)
            try:
                sealed = key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, head + prefix))
            except p11e.PKCS11Error as exc:
                raise errors.CoreStartError(
                    f"PKCS#11 token '{self.token_label}' could not seal the domain key with AES-GCM "
                    f"({type(exc).__name__})"
                ) from None
        return head + prefix + bytes(sealed)

    def unseal(self, sealed: bytes) -> bytes:
        head, body = base.split(self.name, sealed)
        if len(body) < _PREFIX + TAG_SIZE:
            raise errors.CoreStartError("cannot unseal the domain key: the sealed file is truncated")
        if body[0] != MECH_AES_GCM:
            raise errors.CoreStartError(f"cannot unseal the domain key: unknown PKCS#11 mechanism {body[0]}")
        nonce = body[1:_PREFIX]
        with self._session(rw=False) as session:
            key = self._find_key(session)
            if key is None:
                raise errors.CoreStartError(
                    f"cannot unseal the domain key: no key labelled '{self.key_label}' in PKCS#11 token "
                    f"'{self.token_label}'"
                )
            try:
                plain = key.decrypt(
                    body[_PREFIX:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, head + body[:_PREFIX]),
                )
            except p11e.PKCS11Error:
                # SoftHSM2 reports a failed tag as CKR_GENERAL_ERROR; others say CKR_ENCRYPTED_DATA_INVALID.
                raise errors.CoreStartError(
                    f"cannot unseal the domain key: the key '{self.key_label}' in PKCS#11 token "
                    f"'{self.token_label}' does not open it (damaged sealed file, or another token's key)"
                ) from None
        return bytes(plain)

    # ------------------------------------------------------------------ token access
    @contextmanager
    def _session(self, *, rw: bool) -> Iterator[Any]:
        try:
            lib = pkcs11.lib(self.module_path)
        except p11e.PKCS11Error as exc:
            raise errors.CoreStartError(f"cannot load the PKCS#11 module {self.module_path}: {exc}") from None
        try:
            token = lib.get_token(token_label=self.token_label)
        except p11e.NoSuchToken:
            raise errors.CoreStartError(
                f"no PKCS#11 token labelled '{self.token_label}' in module {self.module_path}"
            ) from None
        except p11e.MultipleTokensReturned:
            raise errors.CoreStartError(
                f"several PKCS#11 tokens are labelled '{self.token_label}' in module {self.module_path}"
            ) from None
        except p11e.PKCS11Error as exc:
            raise errors.CoreStartError(
                f"cannot list the tokens of PKCS#11 module {self.module_path} ({type(exc).__name__})"
            ) from None
        session = self._login(token, rw=rw)
        try:
            yield session
        finally:
            # The result is already decided; a failed logout must not replace it.
            with contextlib.suppress(p11e.PKCS11Error):
                session.close()

    def _login(self, token: Any, *, rw: bool) -> Any:
        label = self.token_label
        try:
            return token.open(rw=rw, user_pin=self._pin.reveal().decode("utf-8"))
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
            raise errors.CoreStartError(f"PKCS#11 login failed: wrong PIN for token '{label}'") from None
        except p11e.PinLocked:
            raise errors.CoreStartError(f"PKCS#11 login failed: the PIN of token '{label}' is locked") from None
        except p11e.PinExpired:
            raise errors.CoreStartError(f"PKCS#11 login failed: the PIN of token '{label}' has expired") from None
        except p11e.UserPinNotInitialized:
            raise errors.CoreStartError(f"PKCS#11 login failed: token '{label}' has no user PIN set") from None
        except p11e.PKCS11Error as exc:
            raise errors.CoreStartError(f"PKCS#11 login to token '{label}' failed ({type(exc).__name__})") from None

    def _find_key(self, session: Any) -> Any:
        template = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.LABEL: self.key_label,
        }
        try:
            # Drain the search: a half-read one left to the garbage collector ends after its session closed.
            found = list(session.get_objects(template))
        except p11e.PKCS11Error as exc:
            raise errors.CoreStartError(
                f"cannot search PKCS#11 token '{self.token_label}' for its key ({type(exc).__name__})"
            ) from None
        if not found:
            return None
        if len(found) > 1:
            raise errors.CoreStartError(
                f"several keys are labelled '{self.key_label}' in PKCS#11 token '{self.token_label}'"
            )
        key = found[0]
        try:
            protected = key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE] and key[Attribute.VALUE_LEN] == 32
        except p11e.PKCS11Error:
            protected = False
        if not protected:
            raise errors.CoreStartError(
                f"the key '{self.key_label}' in PKCS#11 token '{self.token_label}' is not a sensitive, "
                "non-extractable AES-256 key; refusing to seal the domain key with it"
            )
        return key

    def _create_key(self, session: Any) -> Any:
        try:
            return session.generate_key(
                KeyType.AES,
                256,
                label=self.key_label,
                store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.MODIFIABLE: False,
                },
            )
        except p11e.PKCS11Error as exc:
            raise errors.CoreStartError(
                f"cannot create the wrapping key '{self.key_label}' in PKCS#11 token '{self.token_label}' "
                f"({type(exc).__name__})"
            ) from None
