"""DESIGN invariant 5, bad input gets a clear error and never a crash: Hypothesis-driven requests.

Three kinds of request, against the in-process ASGI app (most examples: fast; SQLite, then a shorter run on
PostgreSQL) and a live server with its isolated core (a shorter run):

* raw bodies: random bytes, invalid UTF-8, text that is not JSON, deeply nested JSON, bodies around and far over
  the size limit, odd content types, methods and paths;
* unsigned envelopes: every top-level field missing, of the wrong JSON type, empty or huge, extra fields, and
  random ``?Action=`` values (the real ones among them);
* signed requests of a real enrolled app, so they pass the signature check and reach payload validation and the
  core: for every real action, each payload field good (real key ids, ciphertexts, signatures, import tokens),
  of the wrong type, empty, huge, invalid base64 or missing, with extra fields; sometimes no nonce, an odd nonce,
  or the wrong key.

Every response must be HTTP 200 with a JSON object whose ``code`` is one of 200, 400, 404 and 500; a 500 is only
one of the contract's enclave errors, never the generic internal error (which means an unhandled exception);
and the server still answers GetVersion afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehsm_kms import config
from ehsm_kms.server.app import KmsApp
from ehsm_kms.server.assemble import build_app
from ehsm_kms.service.all_actions import HANDLERS
from ehsm_kms.wire import actions, payload
from ehsm_kms.wire.sign import sign_request
from tests.live import LiveServer, b64
from tests.robustness.conftest import report

GENERIC_500 = "Server internal error, please contact the administrator."
ALLOWED_500 = frozenset(
    {
        "Server exception.",
        "Import key failed.",
        "ImportToken failed.",
        "ImportKeyMaterial failed.",
        'Token validity time is 24 hours. Try to send "GetParametersForImport" request again.',
    }
)
CODES = frozenset({200, 400, 404, 500})
PASSPHRASE_ENV = "EHSM_RB_FUZZ_PASSPHRASE"
POOL_SIZE = 64

ACTION_NAMES = sorted(actions.ACTIONS)
POST_ACTIONS = sorted(name for name, info in actions.ACTIONS.items() if info.method == "POST")
HANDLED = sorted(HANDLERS)
# Signed by a second app of its own, so that the fuzz does not delete or disable the keys it draws from.
DESTRUCTIVE = frozenset({"DeleteKey", "DeleteAllKey", "DisableKey", "ScheduleKeyDeletion", "SetMinDecryptVersion"})
# More examples for the action whose service code parses the most client input (the import token).
WEIGHT = {"ImportKeyMaterial": 4}
ENC = "EH_KEYUSAGE_ENCRYPT_DECRYPT"
KEY_SPEC_AES = {"keyspec": "EH_AES_GCM_256", "keyusage": ENC, "origin": "EH_INTERNAL_KEY"}
SIG = "EH_KEYUSAGE_SIGN_VERIFY"
# The keys every target makes before fuzzing, so that signed requests name real keys of every family.
KEYS = (
    ("aes", "EH_AES_GCM_256", ENC, "EH_INTERNAL_KEY"),
    ("sm4cbc", "EH_SM4_CBC", ENC, "EH_INTERNAL_KEY"),
    ("sm4ctr", "EH_SM4_CTR", ENC, "EH_INTERNAL_KEY"),
    ("rsa_enc", "EH_RSA_2048", ENC, "EH_INTERNAL_KEY"),
    ("rsa_sig", "EH_RSA_2048", SIG, "EH_INTERNAL_KEY"),
    ("ec", "EH_EC_P256", SIG, "EH_INTERNAL_KEY"),
    ("sm2_enc", "EH_SM2", ENC, "EH_INTERNAL_KEY"),
    ("sm2_sig", "EH_SM2", SIG, "EH_INTERNAL_KEY"),
    ("hmac", "EH_HMAC", SIG, "EH_INTERNAL_KEY"),
    ("external", "EH_AES_GCM_256", ENC, "EH_EXTERNAL_KEY"),
    ("disabled", "EH_AES_GCM_128", ENC, "EH_INTERNAL_KEY"),
)


# ------------------------------------------------------------------------------------------------ targets
@dataclass
class Material:
    """What an enrolled app has: keys of every family and real values made with them."""

    appid: str = ""
    apikey: str = ""
    keyids: dict[str, str] = field(default_factory=dict)
    scratch: dict[str, str] = field(default_factory=dict)  # appid, apikey of the app that destructive actions use
    scratch_keyids: list[str] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)  # payload field -> real values

    def add(self, name: str, value: Any) -> None:
        if isinstance(value, str) and value:
            pool = self.values.setdefault(name, [])
            if len(pool) < POOL_SIZE:
                pool.append(value)
            else:
                pool[len(value) % POOL_SIZE] = value

    def learn(self, result: Any) -> None:
        """Keep the values a successful answer carried: later requests send them back, changed or not."""
        if not isinstance(result, dict):
            return
        for name in ("ciphertext", "signature", "mac", "plaintext"):
            self.add(name, result.get(name))
        self.add("olddatakey_base", result.get("ciphertext"))
        token = result.get("importToken")
        if isinstance(token, str):
            self.values.setdefault("importToken", []).append(token)  # the newest one is the one the store holds


class Target:
    """Somewhere to send requests; checks every answer and counts them."""

    name = "target"

    def __init__(self) -> None:
        self.sent = 0
        self.codes: dict[int, int] = {}
        self.material = Material()

    def _request(
        self, method: str, path: str, params: dict[str, str] | None, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        raise NotImplementedError

    def send(
        self,
        content: bytes,
        *,
        action: str | None = None,
        method: str = "POST",
        path: str = "/ehsm/",
        content_type: str | None = "application/json",
    ) -> dict[str, Any]:
        params = None if action is None else {"Action": action}
        headers = {} if content_type is None else {"content-type": content_type}
        self.sent += 1
        resp = self._request(method, path, params, content, headers)
        out = checked(resp)
        self.codes[out["code"]] = self.codes.get(out["code"], 0) + 1
        if out["code"] == 200:
            self.material.learn(out["result"])
        return out

    def post(self, action: str, body: Any) -> dict[str, Any]:
        return self.send(json.dumps(body).encode(), action=action)

    def signed(self, action: str, fields: dict[str, Any] | None, *, nonce: Any = "n") -> dict[str, Any]:
        return self.post(action, signed_body(self.material, fields, nonce=nonce))

    def version(self) -> dict[str, Any]:
        return self.send(b"", action="GetVersion", method="GET", content_type=None)

    def prepare(self) -> None:
        """Enroll an app and make the keys and values the signed fuzz draws from."""
        out = self.send(b"", action="Enroll", method="GET", content_type=None)
        assert out["code"] == 200, out
        m = self.material
        m.appid, m.apikey = out["result"]["appid"], out["result"]["apikey"]
        for name, spec, usage, origin in KEYS:
            out = self.signed("CreateKey", {"keyspec": spec, "keyusage": usage, "origin": origin})
            assert out["code"] == 200, (name, out)
            m.keyids[name] = out["result"]["keyid"]
        out = self.send(b"", action="Enroll", method="GET", content_type=None)
        m.scratch = {"appid": out["result"]["appid"], "apikey": out["result"]["apikey"]}
        for _ in range(3):
            made = self.post("CreateKey", signed_body(m, KEY_SPEC_AES, **m.scratch))
            m.scratch_keyids.append(made["result"]["keyid"])
        k = m.keyids
        assert self.signed("DisableKey", {"keyid": k["disabled"]})["code"] == 200
        for key in ("aes", "sm4cbc", "sm4ctr"):
            out = self.signed("Encrypt", {"keyid": k[key], "plaintext": b64(b"fuzz"), "aad": b64(b"aad")})
            m.add("ciphertext", out["result"]["ciphertext"])
            out = self.signed("GenerateDataKeyWithoutPlaintext", {"keyid": k[key], "keylen": 32})
            m.add("olddatakey_base", out["result"]["ciphertext"])
        for key in ("rsa_enc", "sm2_enc"):
            out = self.signed(
                "AsymmetricEncrypt", {"keyid": k[key], "plaintext": b64(b"fuzz"), "padding_mode": "EH_RSA_PKCS1_OAEP"}
            )
            m.add("ciphertext", out.get("result", {}).get("ciphertext"))
        for key, digest in (("ec", "EH_SHA_256"), ("sm2_sig", "EH_SM3"), ("rsa_sig", "EH_SHA_256")):
            out = self.signed(
                "Sign",
                {
                    "keyid": k[key],
                    "message": b64(b"fuzz"),
                    "message_type": "EH_RAW",
                    "digest_mode": digest,
                    "padding_mode": "EH_RSA_PKCS1_PSS",
                },
            )
            m.add("signature", out.get("result", {}).get("signature"))
        out = self.signed("GenerateMac", {"keyid": k["hmac"], "message": b64(b"fuzz")})
        m.add("mac", out.get("result", {}).get("mac"))
        out = self.signed("GetParametersForImport", {"keyid": k["external"], "keyspec": "EH_RSA_2048"})
        assert out["code"] == 200, out  # its importToken went to the pool (learn)
        m.add("plaintext", b64(b"fuzz"))
        m.add("message", b64(b"fuzz"))
        m.add("aad", b64(b"aad"))
        m.add("key_material", b64(bytes(256)))


class InProcess(Target):
    name = "in-process"

    def __init__(self, runner: asyncio.Runner, client: httpx.AsyncClient) -> None:
        super().__init__()
        self.runner, self.client = runner, client
        self.kms_app: KmsApp | None = None

    def _request(
        self, method: str, path: str, params: dict[str, str] | None, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        return self.runner.run(self.client.request(method, path, params=params, content=content, headers=headers))


class Live(Target):
    name = "live"

    def __init__(self, server: LiveServer) -> None:
        super().__init__()
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=30.0)

    def _request(
        self, method: str, path: str, params: dict[str, str] | None, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        return self.client.request(method, path, params=params, content=content, headers=headers)


def checked(resp: httpx.Response) -> dict[str, Any]:
    """The invariant itself, for one response."""
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    out = resp.json()
    assert isinstance(out, dict), resp.text[:300]
    code = out.get("code")
    assert type(code) is int and code in CODES, out
    if "message" in out:
        assert isinstance(out["message"], str), out
    assert "result" in out, out
    if code == 500:
        assert out.get("message") != GENERIC_500, f"an unhandled exception inside the server: {out}"
        assert out.get("message") in ALLOWED_500, out
    assert "Traceback" not in resp.text
    return out


def signed_body(
    m: Material,
    fields: Any,
    *,
    nonce: Any = "n",
    appid: str | None = None,
    apikey: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A body signed by the contract's rule, by the material's app unless ``appid``/``apikey`` say otherwise."""
    appid = appid if appid is not None else m.appid
    ts = timestamp if timestamp is not None else str(int(time.time() * 1000))
    if nonce == "n":  # a fresh one
        nonce = secrets.token_hex(8)
    out: dict[str, Any] = {"appid": appid, "timestamp": ts}
    if nonce is not None:
        out["nonce"] = nonce
    if fields is not None:
        out["payload"] = fields
    out["sign"] = sign_request(apikey if apikey is not None else m.apikey, appid, ts, fields, nonce)
    return out


# ------------------------------------------------------------------------------------------------ fixtures
class ErrorLog(logging.Handler):
    """Collects error records of the in-process server (an unhandled exception is logged there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("ehsm_kms")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def in_process(data_dir: Path, store_url: str | None = None) -> Iterator[InProcess]:
    """The ASGI app of a node with an in-process core, driven through httpx.ASGITransport."""
    overrides = {
        "data_dir": str(data_dir),
        "store_url": store_url,
        "core_mode": "inprocess",
        "sealer": "passphrase",
        "sealer_secret": f"env:{PASSPHRASE_ENV}",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSPHRASE_ENV, "fuzz passphrase, not a real one")
        app = build_app(config.load(overrides=overrides, environ={}))
        with asyncio.Runner() as runner:
            runner.run(app.startup())
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kms.test")
            try:
                target = InProcess(runner, client)
                target.kms_app = app
                target.prepare()
                yield target
            finally:
                runner.run(client.aclose())
                runner.run(app.shutdown())


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory: pytest.TempPathFactory, error_log: ErrorLog) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("fuzz-inprocess")) as target:
        yield target


@pytest.fixture(scope="module")
def inprocess_pg(
    tmp_path_factory: pytest.TempPathFactory, error_log: ErrorLog, rb_store_url: str
) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("fuzz-inprocess-pg"), rb_store_url) as target:
        target.name = "in-process, PostgreSQL"
        yield target


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("fuzz-live")
    server = LiveServer(data_dir, f"sqlite:///{data_dir / 'ehsm-kms.db'}").start()
    target = Live(server)
    try:
        target.prepare()
        yield target
    finally:
        target.client.close()
        server.stop()


# ------------------------------------------------------------------------------------------------ strategies
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# fmt: off
ODD_STRINGS = st.sampled_from([
    "", " ", "0", "null", "true", "[]", "{}", "=", "==", "====", "a", "ab=", "abc", "YQ", "YQ===", "Y Q==", "YQ==\n",
    "-_-_", "YQ==YQ==", "\x00", "\u202e", "\U0001f600", "\ufeff", "%00", "../../etc/passwd",
    "00000000-0000-0000-0000-00000000000", "00000000-0000-0000-0000-0000000000000",
    "ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ", "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
])
# fmt: on
HUGE = st.sampled_from([6144, 8192, 8193, 8196, 8400, 8404, 10924, 12288, 40000, 120_000]).flatmap(
    lambda n: st.sampled_from(["A" * n, "/" * n, "\u00e9" * n, "\U0001f600" * (n // 2)])
)
SURROGATES = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()), min_size=1, max_size=3
)
NUL_TEXT = st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda t: t[0] + "\x00" + t[1])
BAD_VALUES = NUL_TEXT | JSON | ODD_STRINGS | HUGE | st.binary(max_size=48).map(lambda b: b.decode("latin-1"))


def _deep(n: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value] if kind == "list" else {"a": value}
    return value


def _token(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return base64.b64encode(text.encode()).decode()


def import_tokens(m: Material) -> st.SearchStrategy[Any]:
    newest = st.just(m.values["importToken"]).map(lambda tokens: tokens[-1])
    forged = st.fixed_dictionaries(
        {},
        optional={
            "keyid": keyids(m) | JSON,
            "token_id": JSON,
            "expires": st.integers() | JSON,
            "dkv": st.integers() | JSON,
            "mac": JSON,
        },
    ).map(_token)
    # A token that decodes to deeply nested JSON (the payload's own nesting is limited, a token's is not).
    nested = st.tuples(st.integers(2_000, 40_000), st.sampled_from([b"[", b'{"a":'])).map(
        lambda t: base64.b64encode(t[1] * t[0]).decode()
    )
    # The newest real token with one field replaced (the value may hold lone surrogates: JSON escapes allow them).
    edited = st.tuples(
        newest,
        st.sampled_from(["keyid", "token_id", "expires", "dkv", "mac", "extra"]),
        JSON | SURROGATES | st.integers(),
    ).map(lambda t: _token({**json.loads(base64.b64decode(t[0])), t[1]: t[2]}))
    return weighted(
        (3, newest),
        (1, pooled(m, "importToken")),
        (2, changed(newest)),
        (2, forged),
        (3, edited),
        (2, nested),
        (2, BAD_VALUES),
        (1, st.just(_token("not json {"))),
    )


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, chosen with the given weights."""
    total = sum(weight for weight, _ in options)

    def choose(i: int) -> st.SearchStrategy[Any]:
        for weight, strategy in options:
            if i < weight:
                return strategy
            i -= weight
        raise AssertionError(i)

    return st.integers(0, total - 1).flatmap(choose)


def pooled(m: Material, name: str) -> st.SearchStrategy[str]:
    """A value from the pool of real values of a field, read when drawn (the pools grow during the run)."""
    return st.integers(min_value=0, max_value=2**16).map(lambda i: m.values[name][i % len(m.values[name])])


def changed(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A real value with one character changed, or cut short."""

    def change(v: str, i: int, cut: bool) -> str:
        i %= len(v)
        return v[:i] if cut else v[:i] + ("B" if v[i] != "B" else "C") + v[i + 1 :]

    return st.tuples(values, st.integers(min_value=0), st.booleans()).map(lambda t: change(*t))


def keyids(m: Material) -> st.SearchStrategy[str]:
    known = sorted(m.keyids.values()) + sorted(m.scratch_keyids)
    return weighted((8, st.sampled_from(known)), (1, st.uuids().map(str)))


def good_values(rule: payload.Rule, m: Material) -> st.SearchStrategy[Any]:
    kind = rule.kind
    if kind is payload.RuleType.CONST:
        return st.sampled_from(sorted(rule.values))
    if kind is payload.RuleType.INT:
        lo = rule.min_num if rule.min_num is not None else -5
        hi = rule.max_num if rule.max_num is not None else 10**6
        return st.integers(lo, hi) | st.sampled_from([lo - 1, hi + 1, 0, 32])
    if rule.pattern is payload.UUID_PATTERN or rule.key in ("keyid", "ukeyid"):
        return keyids(m)
    real = m.values.get(rule.key)
    if kind is payload.RuleType.BASE64:
        made = st.binary(min_size=1, max_size=300).map(b64)
        if not real:
            return made
        return weighted((4, pooled(m, rule.key)), (2, changed(pooled(m, rule.key))), (2, made))
    if real:
        return weighted((4, pooled(m, rule.key)), (2, changed(pooled(m, rule.key))), (1, st.text(max_size=80)))
    return st.text(min_size=rule.min_length or 0, max_size=min(rule.max_length or 80, 80))


@st.composite
def payloads(draw: st.DrawFn, action: str, m: Material) -> Any:
    """Mostly a well-formed payload with a few fields broken (wrong type, empty, huge, missing)."""
    shape = draw(st.integers(0, 39))
    if shape == 0:
        return draw(JSON)  # not an object at all (or an empty one)
    if shape == 1:
        return _deep(draw(st.integers(20, 40)), draw(st.sampled_from(["list", "dict"])))
    rules = payload.RULES.get(action, ())
    out: dict[str, Any] = {}
    for rule in rules:
        if rule.required or draw(st.booleans()):
            out[rule.key] = draw(good_values(rule, m))
    if action == "ImportKeyMaterial" and draw(st.integers(0, 9)):
        name = draw(st.sampled_from(["importToken", "importToken", "importToken", "ImportToken"]))
        out[name] = draw(import_tokens(m))
    if action == "ExportDataKey" and draw(st.integers(0, 3)) == 0:
        out[draw(st.sampled_from(["olddatakey", "old_data_key"]))] = draw(pooled(m, "olddatakey_base") | BAD_VALUES)
    names = [r.key for r in rules] + (["importToken"] if action == "ImportKeyMaterial" else [])
    if names:
        broken = draw(
            st.lists(st.sampled_from(names), max_size=draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3])), unique=True)
        )
        for name in broken:
            if draw(st.integers(0, 4)) == 0:
                out.pop(name, None)
            else:
                out[name] = draw(BAD_VALUES)
    if draw(st.integers(0, 4)) == 0:
        out.update(draw(st.dictionaries(st.text(max_size=12), JSON | HUGE, max_size=3)))
    return out


ACTION_PARAM = (
    st.sampled_from(ACTION_NAMES)
    | st.text(max_size=20)
    | st.sampled_from(["", "encrypt", "ENCRYPT", "Encrypt ", "DeleteALLKey", "GenHmac", "__proto__", "constructor"])
)
METHODS = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"])
PATHS = st.sampled_from(["/ehsm/", "/ehsm/", "/ehsm", "/", "/ehsm/x", "/EHSM", "/ehsm//"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ]
)


# fmt: off
JSON_ODDITIES = [
    b"", b" ", b"null", b"1", b'"x"', b"[]", b"{}", b"{", b"}", b"[1,]", b"{'a':1}", b"NaN", b'{"a":NaN}',
    b'{"a":Infinity}', b'{"a":1e999}', b'{"a":"\\ud800"}', b'{"a":"\\u0000"}', b"\xef\xbb\xbf{}", b"\xef\xbb\xbf",
    b'{"a":1}{"b":2}', b'{"a":1} x', b'{"a":1,"a":2}', b"\x00", b'{"appid":{"$gt":""}}', b"true", b"[" * 100_000,
]
# fmt: on


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:  # JSON with bytes that are not UTF-8
        junk = draw(st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)))
        return b'{"appid": "' + junk + b'", "timestamp": "1", "sign": "x", "payload": {"k": "' + junk + b'"}}'
    if kind == 2:
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == 3:  # nesting, bare and inside a payload
        n = draw(st.integers(1, 3000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        inner = opener * n + b"1" + closer * n
        return inner if draw(st.booleans()) else b'{"appid":"a","timestamp":"1","sign":"s","payload":' + inner + b"}"
    if kind == 4:  # around the size limit and far over it
        n = draw(st.sampled_from([100 * 1024 - 40, 100 * 1024 - 20, 100 * 1024, 100 * 1024 + 1, 300_000]))
        return b'{"appid":"' + b"a" * max(n - 20, 0) + b'"}'
    if kind == 5:  # JSON oddities
        return draw(st.sampled_from(JSON_ODDITIES))
    if kind == 6:  # JSON with control characters and escapes
        return json.dumps({"appid": draw(st.text(max_size=30)), "payload": draw(st.text(max_size=30))}).encode()
    if kind == 7:
        return json.dumps(draw(JSON)).encode()
    return draw(st.binary(max_size=40)) + b'{"appid":"a"}'


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def envelopes(m: Material) -> st.SearchStrategy[dict[str, Any]]:
    """Envelopes that are mostly well-formed, each field sometimes missing, odd or of the wrong type."""
    now = int(time.time() * 1000)
    timestamps = weighted(
        (4, st.just(str(now))),
        (1, st.sampled_from([str(now - 599_000), str(now + 700_000), str(now - 10**9), "0" * 13, "1" * 12])),
        (1, st.text(min_size=13, max_size=13)),
        (1, st.sampled_from(["Infinity", "0x" + "f" * 11, " 1700000000000", "1.7e12" + "0" * 7, "-" + "1" * 12])),
        (1, JSON),
    )
    appids = weighted(
        (3, st.just(m.appid)),
        (1, st.sampled_from([m.appid.upper(), m.appid + " ", "00000000-0000-0000-0000-000000000000"])),
        (1, st.sampled_from([m.appid[:-1] + "\x00", "\x00", m.appid + "\x00"]) | NUL_TEXT),
        (2, BAD_VALUES),
    )
    signs = weighted((3, st.binary(min_size=32, max_size=32).map(b64)), (1, BAD_VALUES))
    nonces = weighted(
        (3, st.text(max_size=20)),
        (1, st.text(max_size=70) | st.integers() | st.dictionaries(st.just("length"), JSON)),
        (1, BAD_VALUES),
    )
    payloads_ = weighted(
        (3, st.dictionaries(st.sampled_from(["keyid", "plaintext", "keyspec", "aad"]), BAD_VALUES, max_size=3)),
        (1, JSON),
        (1, st.dictionaries(st.text(max_size=12), BAD_VALUES, max_size=4)),
    )
    fields = {"appid": appids, "timestamp": timestamps, "sign": signs, "nonce": nonces, "payload": payloads_}

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), JSON, max_size=2))  # extra fields
        for name, values in fields.items():
            if draw(st.integers(0, 5)):  # each field present five times in six
                out[name] = draw(values)
        return out

    return build()


NONCES = weighted(
    (6, st.just("n")),  # a fresh one
    (1, st.none()),
    (1, st.text(max_size=70)),
    (1, st.integers()),
    (1, st.sampled_from(["", 0, False, [], [""], {}, "x" * 64, "x" * 65, {"length": 65}, {"length": "9"}])),
)


# ------------------------------------------------------------------------------------------------ runs
def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def fuzz_raw(target: Target, n: int) -> None:
    @_settings(n)
    @given(raw_bodies(), ACTION_PARAM, METHODS, PATHS, CONTENT_TYPES)
    def run(content: bytes, action: str, method: str, path: str, content_type: str | None) -> None:
        target.send(content, action=action, method=method, path=path, content_type=content_type)

    run()


def fuzz_envelopes(target: Target, n: int) -> None:
    @_settings(n)
    @given(envelopes(target.material), ACTION_PARAM, st.sampled_from(["POST", "POST", "POST", "GET"]))
    def run(body: dict[str, Any], action: str, method: str) -> None:
        target.send(json.dumps(body).encode(), action=action, method=method)

    run()


def fuzz_signed(target: Target, n: int, only: str | None = None) -> None:
    """Signed requests of random actions (mostly the ones this server implements), or of ``only`` that one."""
    m = target.material
    actions_ = weighted(
        (16, st.sampled_from(HANDLED)),
        (3, st.sampled_from(POST_ACTIONS)),
        (1, st.sampled_from(["NoSuchAction", "encrypt", "GetVersion", "Enroll"])),
    )
    if only is not None:
        actions_ = st.just(only)

    @_settings(n)
    @given(st.data(), actions_, NONCES, st.integers(0, 29))
    def run(data: st.DataObject, action: str, nonce: Any, twist: int) -> None:
        fields = data.draw(payloads(action, m), label="payload")
        who = m.scratch if action in DESTRUCTIVE else {}
        if twist == 0:
            who = {**who, "apikey": "W" * 32}
        body = signed_body(m, fields, nonce=nonce, **who)
        if twist == 1:
            body.update(data.draw(st.dictionaries(st.text(max_size=10), JSON, max_size=3), label="extra"))
        elif twist == 2:
            body["sign"] = data.draw(BAD_VALUES, label="sign")
        target.post(action, body)

    run()


@contextlib.contextmanager
def counted(target: Target, what: str) -> Iterator[None]:
    """Report how many requests the block sent, by answer code."""
    sent, codes = target.sent, dict(target.codes)
    started = time.monotonic()
    yield
    by_code = ", ".join(
        f"{code}: {count - codes.get(code, 0)}"
        for code, count in sorted(target.codes.items())
        if count > codes.get(code, 0)
    )
    seconds = time.monotonic() - started
    report(f"fuzz[{target.name}] {what}: {target.sent - sent} requests in {seconds:.1f} s ({by_code})")


def _survives(target: Target) -> None:
    out = target.version()
    assert out["code"] == 200 and out["result"]["version"] == "0.3.2", out


# ------------------------------------------------------------------------------------------------ tests
def fuzz_signed_each(target: Target, per_action: int, mixed: int) -> None:
    """Every action this server implements gets its own run, then a run of random actions."""
    for action in HANDLED:
        fuzz_signed(target, per_action * WEIGHT.get(action, 1), only=action)
    fuzz_signed(target, mixed)


@pytest.mark.parametrize(
    ("what", "run"),
    [
        ("raw bodies", lambda t: fuzz_raw(t, 400)),
        ("envelopes", lambda t: fuzz_envelopes(t, 400)),
        (
            f"signed payloads ({len(HANDLED)} actions x 50 (ImportKeyMaterial x 200), then 600 of random actions)",
            lambda t: fuzz_signed_each(t, 50, 600),
        ),
    ],
    ids=["raw", "envelopes", "signed"],
)
def test_fuzz_inprocess(inprocess: InProcess, error_log: ErrorLog, what: str, run: Callable[[Target], None]) -> None:
    error_log.records.clear()
    with counted(inprocess, what):
        run(inprocess)
    _survives(inprocess)
    unhandled = [r for r in error_log.records if "failed inside the server" in r]
    assert unhandled == [], unhandled[:5]


@pytest.mark.postgres
def test_fuzz_inprocess_postgres(inprocess_pg: InProcess, error_log: ErrorLog) -> None:
    """A shorter run on the PostgreSQL store: its driver refuses some strings SQLite stores (NUL)."""
    target = inprocess_pg
    error_log.records.clear()
    with counted(target, "raw 40 + envelopes 150 + signed (10 per action, then 150)"):
        fuzz_raw(target, 40)
        fuzz_envelopes(target, 150)
        fuzz_signed_each(target, 10, 150)
    _survives(target)
    unhandled = [r for r in error_log.records if "failed inside the server" in r]
    assert unhandled == [], unhandled[:5]


def test_fuzz_live(live: Live) -> None:
    with counted(live, "raw 60 + envelopes 60 + signed (6 per action, then 100)"):
        fuzz_raw(live, 60)
        fuzz_envelopes(live, 60)
        fuzz_signed_each(live, 6, 100)
    _survives(live)
    assert live.server.proc is not None and live.server.proc.poll() is None, "the server process died"
    log = live.server.log()
    assert "failed inside the server" not in log
    assert "Traceback" not in log


def test_every_real_action_reaches_its_handler(inprocess: InProcess) -> None:
    """The signed fuzz is only worth something if signed requests get past authentication: a well-formed
    request of every real action answers something other than an authentication or envelope error."""
    m = inprocess.material
    auth_messages = {
        "sign error",
        "Missing required parameters",
        "param type error",
        "Unexpected Error",
        "Timestamp error",
        "Timestamp length error",
        "Nonce length error",
    }
    for action in POST_ACTIONS:
        who = m.scratch if action in DESTRUCTIVE else {}
        out = inprocess.post(action, signed_body(m, {"keyid": m.keyids["aes"]}, **who))
        assert out.get("message") not in auth_messages, (action, out)


@pytest.mark.parametrize("where", ["inprocess", pytest.param("inprocess_pg", marks=pytest.mark.postgres)])
def test_inputs_the_fuzz_found(where: str, request: pytest.FixtureRequest) -> None:
    """The requests that answered the generic internal error before they were fixed, kept as plain cases."""
    target: InProcess = request.getfixturevalue(where)
    m = target.material
    real = json.loads(base64.b64decode(m.values["importToken"][-1]))
    importing = {"keyid": m.keyids["external"], "padding_mode": "EH_RSA_PKCS1_OAEP", "key_material": b64(bytes(256))}
    # A token of deeply nested JSON: RecursionError while parsing it.
    out = target.signed("ImportKeyMaterial", {**importing, "importToken": b64(b"[" * 5000)})
    assert (out["code"], out["message"]) == (500, "ImportKeyMaterial failed."), out
    # A token whose token_id holds a lone surrogate (a JSON escape allows it): the store could not encode it.
    out = target.signed("ImportKeyMaterial", {**importing, "importToken": _token({**real, "token_id": "\ud800"})})
    assert (out["code"], out["message"]) == (500, "ImportToken failed."), out
    # NUL in an id that reaches the store: PostgreSQL text cannot hold it ("database error" before).
    export = {"keyid": m.keyids["aes"], "ukeyid": "a\x00b", "olddatakey_base": m.values["olddatakey_base"][0]}
    out = target.signed("ExportDataKey", export)
    assert (out["code"], out["message"]) == (400, "keyid error"), out
    now = str(int(time.time() * 1000))
    for appid in ("\x00", m.appid + "\x00"):
        out = target.post("ListKey", {"appid": appid, "timestamp": now, "sign": "x", "nonce": secrets.token_hex(4)})
        assert out["code"] == 400, out
