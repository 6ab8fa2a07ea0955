"""Sealers: a real SoftHSM2 token, real scrypt, the plaintext development sealer, the sealed-file header."""

from __future__ import annotations

import getpass
import logging
import pickle
import stat
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.sealers import FileSealer, PassphraseSealer, Pkcs11Sealer, base, read_passphrase, sealed_by
from ehsm_kms.core.sealers.file import REFUSED
from ehsm_kms.core.sealers.passphrase import WRONG
from tests.softhsm import SoftHsm, Token

FAST = {"n": 2**4, "r": 8, "p": 1}  # scrypt kept cheap in tests; the default stays 2**15
KEY_LABEL = "ehsm-kms-dk-wrap"


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


# ---------------------------------------------------------------------------------------------- header
@pytest.mark.softhsm
def test_every_sealer_names_itself_in_the_header(hsm_token: tuple[SoftHsm, Token]) -> None:
    hsm, token = hsm_token
    ring = DomainKeyRing.generate().to_bytes()
    for sealer in (
        FileSealer(allow=True),
        PassphraseSealer(b"pw", **FAST),
        Pkcs11Sealer(hsm.module, token.label, token.pin),
    ):
        sealed = sealer.seal(ring)
        assert sealed.startswith(b"EHSEALED\x01")
        assert sealed_by(sealed) == sealer.name
        assert sealer.unseal(sealed) == ring


@pytest.mark.parametrize(
    ("sealed", "message"),
    [
        (b"", "bad magic"),
        (b"EHSEALEX\x01\x04file", "bad magic"),
        (b"EHSEALED\x02\x04file", "unknown envelope version 2"),
        (b"EHSEALED\x01\x09file", "bad header"),
        (b"EHSEALED\x01\x00", "bad header"),
        (b"EHSEALED\x01\x02\xff\xfe", "bad header"),
    ],
)
def test_a_bad_header_is_named(sealed: bytes, message: str) -> None:
    with pytest.raises(errors.CoreStartError, match=message):
        sealed_by(sealed)
    with pytest.raises(errors.CoreStartError, match=message):
        FileSealer(allow=True).unseal(sealed)


def test_the_wrong_kind_of_sealer_says_which_made_the_file() -> None:
    sealed = PassphraseSealer(b"pw", **FAST).seal(b"ring")
    with pytest.raises(errors.CoreStartError) as info:
        FileSealer(allow=True).unseal(sealed)
    assert info.value.message == (
        "the sealed domain key was made by the 'passphrase' sealer, but the 'file' sealer is configured"
    )


def test_the_header_is_authenticated() -> None:
    sealer = PassphraseSealer(b"pw", **FAST)
    sealed = sealer.seal(b"ring")
    relabelled = sealed.replace(b"\x0apassphrase", b"\x0apassphrasf", 1)
    with pytest.raises(errors.CoreStartError):
        sealer.unseal(relabelled)
    assert base.header("passphrase") == b"EHSEALED\x01\x0apassphrase"


# ---------------------------------------------------------------------------------------------- file
def test_file_sealer_is_refused_unless_allowed() -> None:
    for allow in (False, None, 1, "yes"):
        with pytest.raises(errors.CoreStartError) as info:
            FileSealer(allow=allow)  # type: ignore[arg-type]
        assert info.value.message == REFUSED
    assert REFUSED == ("the 'file' sealer stores the domain key in plaintext; it is refused unless explicitly allowed")


def test_file_sealer_warns_on_every_use(caplog: pytest.LogCaptureFixture) -> None:
    sealer = FileSealer(allow=True)
    with caplog.at_level(logging.WARNING, logger="ehsm_kms.core"):
        sealed = sealer.seal(b"ring")
        assert sealer.unseal(sealed) == b"ring"
    warnings = [r for r in caplog.records if r.name == "ehsm_kms.core" and r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("unprotected" in r.getMessage() for r in warnings)


def test_file_sealer_writes_0600_and_loads_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dk.sealed"
    with caplog.at_level(logging.WARNING, logger="ehsm_kms.core"):
        ring = dk.load_or_create(FileSealer(allow=True), path)
        assert dk.load_or_create(FileSealer(allow=True), path) == ring
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ring.key(1) in path.read_bytes()  # it really is plaintext: hence the refusal and the warnings
    assert any("unprotected" in r.getMessage() for r in caplog.records)


def test_file_sealer_detects_damage() -> None:
    sealer = FileSealer(allow=True)
    sealed = sealer.seal(DomainKeyRing.generate().to_bytes())
    with pytest.raises(errors.CoreStartError, match="checksum mismatch"):
        sealer.unseal(_flip(sealed, len(sealed) - 1))
    with pytest.raises(errors.CoreStartError, match="checksum mismatch"):
        sealer.unseal(sealed[:20])


# ---------------------------------------------------------------------------------------------- passphrase
def test_passphrase_round_trip_and_fresh_salt() -> None:
    sealer = PassphraseSealer(b"correct horse battery staple", **FAST)
    ring = DomainKeyRing.generate().to_bytes()
    a, b = sealer.seal(ring), sealer.seal(ring)
    assert a != b
    assert sealer.unseal(a) == sealer.unseal(b) == ring
    assert ring[17:] not in a
    # Parameters travel in the file: a sealer with other defaults opens it.
    assert PassphraseSealer(b"correct horse battery staple", n=2**5).unseal(a) == ring


def test_passphrase_default_cost(tmp_path: Path) -> None:
    sealed = PassphraseSealer(b"pw").seal(b"ring")
    body = sealed[len(base.header("passphrase")) :]
    assert body[:10] == bytes([1, 15]) + (8).to_bytes(4, "big") + (1).to_bytes(4, "big")


def test_wrong_passphrase_is_refused() -> None:
    sealed = PassphraseSealer(b"right", **FAST).seal(b"ring")
    with pytest.raises(errors.CoreStartError) as info:
        PassphraseSealer(b"wrong", **FAST).unseal(sealed)
    assert info.value.message == WRONG
    assert WRONG == "cannot unseal the domain key: wrong passphrase or damaged sealed file"
    assert info.value.__cause__ is None


@pytest.mark.parametrize("where", ["salt", "nonce", "ciphertext", "tag", "cost"])
def test_damaged_passphrase_file_is_refused(where: str) -> None:
    sealer = PassphraseSealer(b"pw", **FAST)
    sealed = sealer.seal(b"the ring bytes")
    start = len(base.header("passphrase"))
    index = {"salt": 10, "nonce": 26, "ciphertext": 38, "tag": -1, "cost": 5}[where]
    damaged = _flip(sealed, start + index if index >= 0 else len(sealed) + index)
    with pytest.raises(errors.CoreStartError, match="cannot unseal the domain key"):
        sealer.unseal(damaged)


def test_truncated_or_costly_passphrase_file_is_refused() -> None:
    sealer = PassphraseSealer(b"pw", **FAST)
    sealed = sealer.seal(b"ring")
    start = len(base.header("passphrase"))
    with pytest.raises(errors.CoreStartError, match="truncated"):
        sealer.unseal(sealed[: start + 40])
    greedy = sealed[: start + 1] + bytes([30]) + sealed[start + 2 :]  # N = 2**30 would need 128 GiB
    with pytest.raises(errors.CoreStartError, match="out of bounds"):
        sealer.unseal(greedy)
    other_kdf = sealed[:start] + b"\x02" + sealed[start + 1 :]
    with pytest.raises(errors.CoreStartError, match="unknown key-derivation function 2"):
        sealer.unseal(other_kdf)


@pytest.mark.parametrize("kwargs", [{"n": 3}, {"n": 1}, {"n": 2**21}, {"p": 0}, {"p": 17}, {"r": 0}], ids=str)
def test_bad_scrypt_parameters_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(errors.CoreStartError, match="bad scrypt parameters"):
        PassphraseSealer(b"pw", **kwargs)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(errors.CoreStartError, match="empty"):
        PassphraseSealer(b"")


def test_passphrase_sealer_hides_its_secret() -> None:
    sealer = PassphraseSealer(b"hunter2-secret", **FAST)
    assert "hunter2" not in repr(sealer)
    with pytest.raises(TypeError):
        pickle.dumps(sealer)


def test_passphrase_load_or_create_never_overwrites_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    ring = dk.load_or_create(PassphraseSealer(b"right", **FAST), path)
    before = path.read_bytes()
    for attempt in (PassphraseSealer(b"wrong", **FAST), FileSealer(allow=True)):
        with pytest.raises(errors.CoreStartError):
            dk.load_or_create(attempt, path)
        assert path.read_bytes() == before
    assert dk.load_or_create(PassphraseSealer(b"right", **FAST), path) == ring


# ------------------------------------------------------------------------------------------ read_passphrase
def test_read_passphrase_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    assert read_passphrase(f"file:{secret}") == b"s3cret"
    secret.write_bytes(b"s3cret\r\n")
    assert read_passphrase(f"file:{secret}") == b"s3cret"
    secret.write_bytes(b"two lines\n\n")
    assert read_passphrase(f"file:{secret}") == b"two lines\n"
    secret.write_bytes(b"\n")
    with pytest.raises(errors.ConfigError, match="empty"):
        read_passphrase(f"file:{secret}")
    with pytest.raises(errors.ConfigError, match="cannot read the passphrase file"):
        read_passphrase(f"file:{tmp_path / 'missing'}")


def test_read_passphrase_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_passphrase("env:DK_PASS", environ={"DK_PASS": "from-mapping"}) == b"from-mapping"
    monkeypatch.setenv("EHSM_TEST_DK_PASS", "from-env")
    assert read_passphrase("env:EHSM_TEST_DK_PASS") == b"from-env"
    monkeypatch.delenv("EHSM_TEST_DK_PASS")
    with pytest.raises(errors.ConfigError, match="EHSM_TEST_DK_PASS"):
        read_passphrase("env:EHSM_TEST_DK_PASS")
    with pytest.raises(errors.ConfigError, match="empty"):
        read_passphrase("env:DK_PASS", environ={"DK_PASS": ""})


def test_read_passphrase_prompts_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def answer(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return "typed"

    monkeypatch.setattr(getpass, "getpass", answer)
    assert read_passphrase("prompt") == b"typed"
    assert prompts == ["Domain-key passphrase: "]


def test_read_passphrase_refuses_to_prompt_with_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    # What getpass does without a terminal: warn, then read stdin with echo. That must not happen.
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)  # type: ignore[attr-defined]
    with pytest.raises(errors.ConfigError, match="without a terminal"):
        read_passphrase("prompt")


@pytest.mark.parametrize("source", ["file:", "env:", "PROMPT", ""])
def test_unknown_source(source: str) -> None:
    with pytest.raises(errors.ConfigError, match="unknown passphrase source"):
        read_passphrase(source)


def test_a_passphrase_given_as_its_own_source_is_not_repeated() -> None:
    with pytest.raises(errors.ConfigError) as info:
        read_passphrase("my-actual-passphrase")
    assert "my-actual" not in str(info.value.message)


# ---------------------------------------------------------------------------------------------- PKCS#11
def _wrapping_keys(hsm: SoftHsm, token: Token) -> list[dict[Attribute, Any]]:
    tok = pkcs11.lib(hsm.module).get_token(token_label=token.label)
    with tok.open(user_pin=token.pin) as session:
        keys = list(
            session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: KEY_LABEL,
                }
            )
        )
        # Read what the tests need while the session is open.
        return [
            {
                attr: key[attr]
                for attr in (
                    Attribute.EXTRACTABLE,
                    Attribute.NEVER_EXTRACTABLE,
                    Attribute.SENSITIVE,
                    Attribute.ALWAYS_SENSITIVE,
                    Attribute.TOKEN,
                    Attribute.PRIVATE,
                    Attribute.MODIFIABLE,
                    Attribute.VALUE_LEN,
                    Attribute.ENCRYPT,
                    Attribute.DECRYPT,
                    Attribute.WRAP,
                    Attribute.SIGN,
                    Attribute.DERIVE,
                )
            }
            for key in keys
        ]


@pytest.mark.softhsm
def test_pkcs11_seal_restart_unseal(hsm_token: tuple[SoftHsm, Token], tmp_path: Path) -> None:
    hsm, token = hsm_token
    path = tmp_path / "dk.sealed"
    ring = dk.load_or_create(Pkcs11Sealer(hsm.module, token.label, token.pin), path)
    sealed = path.read_bytes()
    assert sealed_by(sealed) == "pkcs11"
    assert ring.key(1) not in sealed

    hsm.restart()  # every session and handle is gone, as after a process restart
    again = dk.load_or_create(Pkcs11Sealer(hsm.module, token.label, token.pin), path)
    assert again == ring
    assert again.key(1) == ring.key(1)
    assert path.read_bytes() == sealed

    ring.rotate()
    dk.save(Pkcs11Sealer(hsm.module, token.label, token.pin), path, ring)
    hsm.restart()
    assert dk.load_or_create(Pkcs11Sealer(hsm.module, token.label, token.pin), path) == ring
    assert len(_wrapping_keys(hsm, token)) == 1  # found by label again, never a second key


@pytest.mark.softhsm
def test_pkcs11_wrapping_key_never_leaves_the_token(hsm_token: tuple[SoftHsm, Token]) -> None:
    hsm, token = hsm_token
    Pkcs11Sealer(hsm.module, token.label, token.pin).seal(b"ring")
    (attrs,) = _wrapping_keys(hsm, token)
    assert attrs[Attribute.EXTRACTABLE] is False
    assert attrs[Attribute.NEVER_EXTRACTABLE] is True
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.MODIFIABLE] is False
    assert attrs[Attribute.VALUE_LEN] == 32
    assert attrs[Attribute.ENCRYPT] is True and attrs[Attribute.DECRYPT] is True
    assert not attrs[Attribute.WRAP] and not attrs[Attribute.SIGN] and not attrs[Attribute.DERIVE]

    tok = pkcs11.lib(hsm.module).get_token(token_label=token.label)
    with tok.open(user_pin=token.pin) as session:
        (key,) = list(session.get_objects({Attribute.LABEL: KEY_LABEL}))
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]


@pytest.mark.softhsm
def test_pkcs11_wrong_pin_is_refused_clearly(hsm_token: tuple[SoftHsm, Token], tmp_path: Path) -> None:
    hsm, token = hsm_token
    path = tmp_path / "dk.sealed"
    dk.load_or_create(Pkcs11Sealer(hsm.module, token.label, token.pin), path)
    before = path.read_bytes()
    hsm.restart()
    bad_pin = "9876-not-the-pin"
    with pytest.raises(errors.CoreStartError) as info:
        dk.load_or_create(Pkcs11Sealer(hsm.module, token.label, bad_pin), path)
    message = str(info.value.message)
    assert message.startswith(f"PKCS#11 login failed: wrong PIN for token '{token.label}'")
    assert bad_pin not in message and token.pin not in message
    assert path.read_bytes() == before
    with pytest.raises(errors.CoreStartError, match="wrong PIN"):
        Pkcs11Sealer(hsm.module, token.label, bad_pin).seal(b"ring")


@pytest.mark.softhsm
def test_pkcs11_missing_token_and_module(hsm_token: tuple[SoftHsm, Token]) -> None:
    hsm, token = hsm_token
    with pytest.raises(errors.CoreStartError, match="no PKCS#11 token labelled 'no-such-token'"):
        Pkcs11Sealer(hsm.module, "no-such-token", token.pin).seal(b"ring")
    with pytest.raises(errors.CoreStartError, match=r"cannot load the PKCS#11 module /nonexistent/libp11\.so"):
        Pkcs11Sealer("/nonexistent/libp11.so", token.label, token.pin).seal(b"ring")
    with pytest.raises(errors.CoreStartError, match="cannot load the PKCS#11 module /etc/passwd"):
        Pkcs11Sealer("/etc/passwd", token.label, token.pin).unseal(base.header("pkcs11") + b"\x01" + bytes(40))
    with pytest.raises(errors.CoreStartError, match="no PIN given"):
        Pkcs11Sealer(hsm.module, token.label, "")


@pytest.mark.softhsm
def test_pkcs11_unseal_never_creates_a_key(softhsm: SoftHsm) -> None:
    first, second = softhsm.init_token(), softhsm.init_token()
    sealed = Pkcs11Sealer(softhsm.module, first.label, first.pin).seal(b"ring")
    with pytest.raises(errors.CoreStartError, match=f"no key labelled '{KEY_LABEL}' in PKCS#11 token"):
        Pkcs11Sealer(softhsm.module, second.label, second.pin).unseal(sealed)
    assert _wrapping_keys(softhsm, second) == []

    # Another token's key of the same label does not open it either.
    Pkcs11Sealer(softhsm.module, second.label, second.pin).seal(b"other")
    with pytest.raises(errors.CoreStartError, match="does not open it"):
        Pkcs11Sealer(softhsm.module, second.label, second.pin).unseal(sealed)


@pytest.mark.softhsm
@pytest.mark.parametrize("where", ["mechanism", "nonce", "ciphertext", "tag", "header"])
def test_pkcs11_damaged_file_is_refused(hsm_token: tuple[SoftHsm, Token], where: str) -> None:
    hsm, token = hsm_token
    sealer = Pkcs11Sealer(hsm.module, token.label, token.pin)
    sealed = sealer.seal(DomainKeyRing.generate().to_bytes())
    start = len(base.header("pkcs11"))
    index = {
        "mechanism": start,
        "nonce": start + 1,
        "ciphertext": start + 13,
        "tag": len(sealed) - 1,
        "header": 9,
    }
    with pytest.raises(errors.CoreStartError):
        sealer.unseal(_flip(sealed, index[where]))
    with pytest.raises(errors.CoreStartError, match="truncated"):
        sealer.unseal(sealed[: start + 20])


@pytest.mark.softhsm
def test_pkcs11_refuses_an_extractable_key_with_its_label(hsm_token: tuple[SoftHsm, Token]) -> None:
    hsm, token = hsm_token
    tok = pkcs11.lib(hsm.module).get_token(token_label=token.label)
    with tok.open(rw=True, user_pin=token.pin) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=KEY_LABEL,
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    with pytest.raises(errors.CoreStartError, match="not a sensitive, non-extractable AES-256 key"):
        Pkcs11Sealer(hsm.module, token.label, token.pin).seal(b"ring")


@pytest.mark.softhsm
def test_pkcs11_tokens_of_two_directories(tmp_path: Path, softhsm: SoftHsm) -> None:
    """A second SoftHSM2 directory can be used in the same process; the shared one comes back afterwards."""
    shared = softhsm.init_token()
    sealed = Pkcs11Sealer(softhsm.module, shared.label, shared.pin).seal(b"ring")
    other = SoftHsm(tmp_path / "other")
    try:
        token = other.init_token(label="elsewhere")
        assert (
            Pkcs11Sealer(other.module, token.label, token.pin).unseal(
                Pkcs11Sealer(other.module, token.label, token.pin).seal(b"x")
            )
            == b"x"
        )
        with pytest.raises(errors.CoreStartError, match=f"no PKCS#11 token labelled '{shared.label}'"):
            Pkcs11Sealer(softhsm.module, shared.label, shared.pin).unseal(sealed)
    finally:
        other.close()
    softhsm.activate()
    assert Pkcs11Sealer(softhsm.module, shared.label, shared.pin).unseal(sealed) == b"ring"


def test_pkcs11_sealer_hides_its_pin() -> None:
    sealer = Pkcs11Sealer("/usr/lib/softhsm/libsofthsm2.so", "tok", "pin-4711")
    assert "4711" not in repr(sealer)
    with pytest.raises(TypeError):
        pickle.dumps(sealer)
