"""Secret names, descriptions and values of every printable character and of the maximum sizes come back
byte-exact; a value sealed for one place (app, secret, name, version) does not open anywhere else.

The moves are made in the database under the live server, as a database writer could make them (contract section
12.1.7: the original sealed every value with an empty aad, so a moved value opened wherever it was put).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.e2e import DECRYPTION_FAILED, SERVER_EXCEPTION, App, invalid, node_error
from tests.e2e.conftest import Kms
from tests.pg import PG_DSN

ASCII_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
# Printable beyond ASCII, and what breaks naive code: the sign string's own separators, quotes, escapes, JSON
# and HTML metacharacters, percent-escapes, tabs and newlines, combining marks, right-to-left, astral characters.
TRICKY = "&=%25&a=b\"'`\\/<>{}[]\t\n\r\n é ñ ß Ω 中文 日本語 한국어 עברית العربية e\u0301 ☃ 😀 🏳️‍🌈 \u200b\u00a0"


def units(text: str) -> int:
    """JavaScript's ``length``: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def filled(pattern: str, size: int) -> str:
    """``pattern`` repeated to exactly ``size`` UTF-16 code units (padded with ASCII)."""
    out = ""
    for char in pattern * (size // len(pattern) + 1):
        if units(out + char) > size:
            break
        out += char
    return out + "x" * (size - units(out))


def names() -> list[str]:
    """Every printable ASCII character, spread over names of at most 64 characters, then the tricky ones."""
    out = [ASCII_PRINTABLE[i : i + 64] for i in range(0, len(ASCII_PRINTABLE), 64)]
    return [*out, "&=%", "a=b&c=d", "%41%42", "'\"", "tab\there", "new\nline", " leading and trailing ", "é☃😀"]


def test_names_descriptions_and_values_of_every_printable_character(app: App) -> None:
    data = ASCII_PRINTABLE + TRICKY
    for i, name in enumerate(names()):
        description = f"{i}: {ASCII_PRINTABLE} {TRICKY}"
        out = app.call("CreateSecret", {"secretName": name, "secretData": data + name, "description": description})
        assert out == {"code": 200, "message": f"The {name} create success.", "result": {}}
        got = app.ok("GetSecretValue", {"secretName": name})
        assert got["secretName"] == name and got["secretData"] == data + name
        assert app.ok("DescribeSecret", {"secretName": name})["description"] == description
        put = app.call("PutSecretValue", {"secretName": name, "secretData": TRICKY})
        assert put["message"] == f"The {name} new version put success."
        assert app.ok("GetSecretValue", {"secretName": name})["secretData"] == TRICKY
    listed = app.ok("ListSecrets", {})["secretList"]
    assert sorted(row["secretName"] for row in listed) == sorted(names())
    for name in names():
        assert app.ok("ListSecrets", {"secretName": name})["secretList"][0]["secretName"] == name
        assert app.ok("ListSecretVersionIds", {"secretName": name})["secretName"] == name
        assert app.call("DeleteSecret", {"secretName": name})["message"] == f"The {name} will be deleted after 30 days."
        assert app.call("RestoreSecret", {"secretName": name})["message"] == f"The {name} restore success."
        assert app.call("DeleteSecret", {"secretName": name, "forceDelete": "true"})["message"] == (
            f"The {name} delete success"
        )


def test_a_name_with_nul_is_kept_too(app: App) -> None:
    """Not printable, but a client can send it; the original stored names base64-encoded, so it worked there."""
    name = "a\x00b"
    assert app.call("CreateSecret", {"secretName": name, "secretData": "v\x00"})["code"] == 200
    assert app.ok("GetSecretValue", {"secretName": name})["secretData"] == "v\x00"
    assert app.ok("DescribeSecret", {"secretName": "a"}) == {}


# Sizes count UTF-16 code units, as the original's JavaScript did: an astral character counts twice.
@pytest.mark.parametrize(
    ("name", "data", "description"),
    [
        ("n" * 64, "d" * 4096, "e" * 4096),
        ("☃" * 64, "☃" * 4096, "☃" * 4096),  # 3 UTF-8 bytes each: a 12,288-byte value
        ("😀" * 32, "😀" * 2048, "😀" * 2048),
        (filled(TRICKY, 64), filled(ASCII_PRINTABLE + TRICKY, 4096), filled(TRICKY + ASCII_PRINTABLE, 4096)),
    ],
    ids=["ascii", "bmp", "astral", "mixed"],
)
def test_maximum_sizes(app: App, name: str, data: str, description: str) -> None:
    extra = {"description": description} if description else {}
    assert app.call("CreateSecret", {"secretName": name, "secretData": data, **extra})["code"] == 200
    assert app.ok("GetSecretValue", {"secretName": name})["secretData"] == data
    assert app.ok("DescribeSecret", {"secretName": name}).get("description", "") == description
    assert app.call("PutSecretValue", {"secretName": name, "secretData": data[::-1]})["code"] == 200
    assert app.ok("GetSecretValue", {"secretName": name, "versionId": 2})["secretData"] == data[::-1]
    assert units(name) == 64 and units(data) == 4096
    too_long = name + "x"
    assert app.call("CreateSecret", {"secretName": too_long, "secretData": "x"}) == invalid(
        "secretName", "length error."
    )
    assert app.call("PutSecretValue", {"secretName": name, "secretData": data + "x"}) == invalid(
        "secretData", "length error."
    )
    assert app.call("UpdateSecretDesc", {"secretName": name, "description": "x" * 4097}) == invalid(
        "description", "length error."
    )


# ---------------------------------------------------------------- moved values do not open
class Db:
    """Direct access to the live server's database, as an attacker with write access to it has."""

    def __init__(self, store_url: str) -> None:
        self.url = store_url

    def execute(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:"):
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)) as conn:
                rows = conn.execute(statement, params).fetchall()
                conn.commit()
                return rows
        schema = parse_qs(urlsplit(self.url).query)["schema"][0]
        with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as pg:
            cur = pg.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def secret_id(self, appid: str, name: str) -> str:
        rows = self.execute("SELECT secret_id FROM secrets WHERE appid = ? AND name = ?", appid, name.encode())
        assert len(rows) == 1
        return str(rows[0][0])

    def ciphertext(self, secret_id: str, version: int) -> bytes:
        rows = self.execute(
            "SELECT ciphertext FROM secret_versions WHERE secret_id = ? AND version = ?", secret_id, version
        )
        return bytes(rows[0][0])

    def set_ciphertext(self, secret_id: str, version: int, data: bytes) -> None:
        self.execute(
            "UPDATE secret_versions SET ciphertext = ? WHERE secret_id = ? AND version = ?", data, secret_id, version
        )


@pytest.fixture
def db(kms: Kms) -> Iterator[Db]:
    yield Db(kms.store_url)


def test_the_database_holds_no_plaintext(app: App, db: Db) -> None:
    app.ok("CreateSecret", {"secretName": "plain", "secretData": "needle-in-the-haystack"})
    sid = db.secret_id(app.appid, "plain")
    assert b"needle" not in db.ciphertext(sid, 1)
    assert all(b"needle" not in bytes(row[0]) for row in db.execute("SELECT ciphertext FROM secret_versions"))


@pytest.mark.parametrize("keyspec", [None, "EH_AES_GCM_256", "EH_SM4_CBC"])
def test_a_value_moved_to_another_version_or_secret_fails(app: App, db: Db, keyspec: str | None) -> None:
    extra = {"encryptionKeyId": app.create_key(keyspec)} if keyspec else {}
    for name in ("a", "b"):
        app.ok("CreateSecret", {"secretName": name, "secretData": f"{name} one", **extra})
        app.ok("PutSecretValue", {"secretName": name, "secretData": f"{name} two"})
    a, b = db.secret_id(app.appid, "a"), db.secret_id(app.appid, "b")
    a1, a2 = db.ciphertext(a, 1), db.ciphertext(a, 2)

    db.set_ciphertext(a, 2, a1)  # an older value as the current one
    assert app.call("GetSecretValue", {"secretName": "a"}) == DECRYPTION_FAILED
    db.set_ciphertext(a, 2, a2)
    assert app.ok("GetSecretValue", {"secretName": "a"})["secretData"] == "a two"

    db.set_ciphertext(b, 1, a1)  # another secret's value, same app, same key
    assert app.call("GetSecretValue", {"secretName": "b", "versionId": 1}) == DECRYPTION_FAILED

    db.execute("UPDATE secrets SET name = ? WHERE secret_id = ?", b"renamed", a)  # the row renamed
    assert app.call("GetSecretValue", {"secretName": "renamed"}) == DECRYPTION_FAILED
    db.execute("UPDATE secrets SET name = ? WHERE secret_id = ?", b"a", a)
    assert app.ok("GetSecretValue", {"secretName": "a", "versionId": 1})["secretData"] == "a one"

    flipped = bytearray(a2)
    flipped[-1] ^= 1
    db.set_ciphertext(a, 2, bytes(flipped))
    assert app.call("GetSecretValue", {"secretName": "a"}) == DECRYPTION_FAILED


def test_a_value_moved_to_another_app_fails(app: App, other_app: App, db: Db) -> None:
    for owner in (app, other_app):
        owner.ok("CreateSecret", {"secretName": "same", "secretData": f"{owner.appid}"})
    mine, theirs = db.secret_id(app.appid, "same"), db.secret_id(other_app.appid, "same")
    db.set_ciphertext(theirs, 1, db.ciphertext(mine, 1))
    assert other_app.call("GetSecretValue", {"secretName": "same"}) == DECRYPTION_FAILED
    # The default secret keys are bound to their app: one copied to another app's row does not open.
    key = db.execute("SELECT blob FROM secret_default_keys WHERE appid = ?", app.appid)[0][0]
    db.execute("UPDATE secret_default_keys SET blob = ? WHERE appid = ?", key, other_app.appid)
    assert other_app.call("GetSecretValue", {"secretName": "same"}) == SERVER_EXCEPTION
    assert other_app.call("PutSecretValue", {"secretName": "same", "secretData": "x"}) == SERVER_EXCEPTION
    assert app.ok("GetSecretValue", {"secretName": "same"})["secretData"] == app.appid


def test_a_lost_default_key_is_not_replaced_behind_the_secrets_back(app: App, db: Db) -> None:
    app.ok("CreateSecret", {"secretName": "d", "secretData": "x"})
    db.execute("DELETE FROM secret_default_keys WHERE appid = ?", app.appid)
    lost = node_error(400, "Cannot find default CMK.")
    assert app.call("GetSecretValue", {"secretName": "d"}) == lost
    assert app.call("PutSecretValue", {"secretName": "d", "secretData": "y"}) == lost
    assert app.ok("ListSecretVersionIds", {"secretName": "d"})["totalCount"] == 1


def test_a_secret_moved_to_another_cmk_of_the_app_fails(app: App, db: Db) -> None:
    k1, k2 = app.create_key("EH_AES_GCM_256"), app.create_key("EH_AES_GCM_256")
    app.ok("CreateSecret", {"secretName": "k", "secretData": "x", "encryptionKeyId": k1})
    db.execute("UPDATE secrets SET encryption_key_id = ? WHERE secret_id = ?", k2, db.secret_id(app.appid, "k"))
    assert app.call("GetSecretValue", {"secretName": "k"}) == DECRYPTION_FAILED
