"""How the SDK talks: signing, nonces, empty fields, retries, timeouts, TLS, the environment, error mapping.

The servers are real: the live server on loopback, a TLS one with a self-signed certificate, and for the failure
cases plain sockets that refuse, stall or answer something that is not the KMS.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import inspect
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ehsm_kms import errors
from ehsm_kms.client import (
    SAFE_ACTIONS,
    Client,
    ConnectionFailed,
    CredentialsMissing,
    ResponseError,
)
from ehsm_kms.client.errors import error_class, from_wire
from ehsm_kms.wire import sign as wire_sign
from tests.live import LiveServer, free_port


class Recorder(httpx.BaseTransport):
    """The real network transport, remembering each request; ``fail`` makes the first N attempts fail to connect."""

    def __init__(self, fail: int = 0, error: type[httpx.TransportError] = httpx.ConnectError) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.fail = fail
        self.error = error

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.fail > 0:
            self.fail -= 1
            raise self.error("connection refused (injected)", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.content) for r in self.requests if r.content]


@pytest.fixture
def enrolled(live_server: LiveServer) -> Iterator[tuple[str, str]]:
    with Client(live_server.url) as client:
        made = client.enroll()
    yield made.appid, made.apikey


def test_every_request_is_signed_with_a_fresh_nonce_and_no_empty_fields(
    live_server: LiveServer, enrolled: tuple[str, str]
) -> None:
    appid, apikey = enrolled
    recorder = Recorder()
    with Client(live_server.url, appid, apikey, transport=recorder) as client:
        keyid = client.create_key()
        client.encrypt(keyid, b"a", aad=b"")
        client.encrypt(keyid, b"a", aad=None)
        client.list_keys()
    bodies = recorder.bodies()
    assert len(bodies) == 4
    nonces = [b["nonce"] for b in bodies]
    assert len(set(nonces)) == 4 and all(len(n) == 32 for n in nonces)
    for body in bodies:
        assert set(body) <= {"appid", "timestamp", "nonce", "payload", "sign"}
        assert abs(int(body["timestamp"]) - time.time() * 1000) < 60_000 and len(body["timestamp"]) == 13
        expected = wire_sign.sign_request(apikey, appid, body["timestamp"], body.get("payload"), body["nonce"])
        assert body["sign"] == expected
        assert all(v not in ("", None) for v in (body.get("payload") or {}).values())
    assert "aad" not in bodies[1]["payload"] and "aad" not in bodies[2]["payload"]
    assert "payload" not in bodies[3]  # ListKey has none
    for request in recorder.requests:
        assert request.url.path == "/ehsm" and request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("ehsm-kms-python/")


def test_safe_actions_are_retried_with_a_new_signature(live_server: LiveServer, enrolled: tuple[str, str]) -> None:
    appid, apikey = enrolled
    with Client(live_server.url, appid, apikey) as plain:
        keyid = plain.create_key()
    recorder = Recorder(fail=2)
    with Client(live_server.url, appid, apikey, transport=recorder, retries=2, backoff=0.01) as client:
        assert client.decrypt(keyid, client.encrypt(keyid, b"x")) == b"x"  # the first call is retried twice
    first = recorder.bodies()[:3]
    assert len(recorder.requests) == 4
    assert len({b["nonce"] for b in first}) == 3 and len({b["sign"] for b in first}) == 3


def test_unsafe_actions_are_never_retried(live_server: LiveServer, enrolled: tuple[str, str]) -> None:
    appid, apikey = enrolled
    for action, call in (
        ("CreateKey", lambda c: c.create_key()),
        ("DeleteKey", lambda c: c.delete_key("00000000-0000-0000-0000-000000000000")),
        ("Enroll", lambda c: c.enroll()),
        ("GetParametersForImport", lambda c: c.get_parameters_for_import("00000000-0000-0000-0000-000000000000")),
    ):
        assert action not in SAFE_ACTIONS
        recorder = Recorder(fail=1)
        with (
            Client(live_server.url, appid, apikey, transport=recorder, retries=5, backoff=0) as client,
            pytest.raises(ConnectionFailed) as caught,
        ):
            call(client)
        assert len(recorder.requests) == 1, action
        assert caught.value.exit_code == errors.EXIT_CONNECTION
        assert action in (caught.value.message or "")


def test_retries_run_out(enrolled: tuple[str, str]) -> None:
    appid, apikey = enrolled
    port = free_port()  # nothing listens there: a real refused connection
    started = time.monotonic()
    with (
        Client(f"http://127.0.0.1:{port}", appid, apikey, retries=3, backoff=0.05) as client,
        pytest.raises(ConnectionFailed, match="cannot reach the KMS"),
    ):
        client.generate_random(8)
    assert time.monotonic() - started >= 0.05 + 0.1 * 0.5  # it waited between the attempts


@contextlib.contextmanager
def stalling_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_timeouts(enrolled: tuple[str, str]) -> None:
    appid, apikey = enrolled
    with stalling_server() as port, Client(f"http://127.0.0.1:{port}", appid, apikey, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            client.generate_random(8)  # a read timeout: the server may be working on it, so no retry
        assert time.monotonic() - started < 3


@contextlib.contextmanager
def not_a_kms(status: int, body: bytes) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, b"<html>bad gateway</html>"), (200, b"<html>a login page</html>"), (200, b'{"no": "code"}'), (200, b"[]")],
)
def test_an_answer_that_is_not_the_kms(status: int, body: bytes) -> None:
    with not_a_kms(status, body) as url, Client(url, "a", "b") as client:
        with pytest.raises(ResponseError) as caught:
            client.list_keys()
        assert caught.value.exit_code == errors.EXIT_SERVER
        with pytest.raises(ResponseError):
            client.get_version()


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, f"sqlite:///{tmp_path}/kms.db", extra=["--tls-self-signed"], tls=True).start()
    try:
        recorder_url = server.url
        with (
            Client(recorder_url, retries=3, backoff=0) as client,
            pytest.raises(ConnectionFailed, match="TLS verification failed"),
        ):
            client.get_version()
        with Client(recorder_url, ca_bundle=str(tmp_path / "tls-cert.pem")) as client:
            assert client.get_version().version == "0.3.2"
            client.enroll()
            assert client.generate_random(4)
        with Client(recorder_url, insecure=True) as client:
            assert client.get_version().version == "0.3.2"
        with pytest.raises(errors.ConfigError, match="CA bundle"):
            Client(recorder_url, ca_bundle=str(tmp_path / "missing.pem"))
    finally:
        server.stop()


def test_credentials_and_server_from_the_environment(
    live_server: LiveServer, enrolled: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    appid, apikey = enrolled
    for name in ("EHSM_KMS_URL", "EHSM_KMS_APPID", "EHSM_KMS_APIKEY", "EHSM_SERVER_URL", "EHSM_APPID", "EHSM_APIKEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialsMissing, match="no server URL"):
        Client()
    # The original SDK's names, with /ehsm in the URL as it wants ...
    monkeypatch.setenv("EHSM_SERVER_URL", live_server.url + "/ehsm/")
    monkeypatch.setenv("EHSM_APPID", appid)
    monkeypatch.setenv("EHSM_APIKEY", apikey)
    with Client() as client:
        assert client.url == live_server.url + "/ehsm" and client.appid == appid
        assert len(client.generate_random(8)) == 8
    # ... and ours, which come first.
    monkeypatch.setenv("EHSM_SERVER_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("EHSM_APIKEY", "wrong")
    monkeypatch.setenv("EHSM_KMS_URL", live_server.url)
    monkeypatch.setenv("EHSM_KMS_APIKEY", apikey)
    with Client() as client:
        assert len(client.generate_random(8)) == 8
    # Arguments beat the environment.
    with Client(live_server.url, appid, "x" * 32) as client, pytest.raises(errors.SignError):
        client.list_keys()


def test_credentials_missing(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EHSM_KMS_APPID", "EHSM_KMS_APIKEY", "EHSM_APPID", "EHSM_APIKEY"):
        monkeypatch.delenv(name, raising=False)
    with Client(live_server.url) as client:
        assert client.get_version().version == "0.3.2"  # needs none
        with pytest.raises(CredentialsMissing) as caught:
            client.list_keys()
    assert caught.value.exit_code == errors.EXIT_USAGE
    with pytest.raises(errors.ConfigError):
        Client("ftp://127.0.0.1/ehsm")


def test_secrets_stay_out_of_reprs_and_pickles(live_server: LiveServer, enrolled: tuple[str, str]) -> None:
    appid, apikey = enrolled
    with Client(live_server.url, appid, apikey) as client:
        assert apikey not in repr(client) and appid in repr(client)
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(client)
        made = client.generate_data_key(client.create_key())
        assert base64.b64encode(made.plaintext).decode() not in repr(made)


def test_the_error_table_inverts_the_servers_error_tree() -> None:
    """Every wire answer the server's error classes produce maps back to that class (or its wire twin)."""
    same_wire = {
        errors.PayloadError: errors.BadRequest,  # only its messages tell it apart (prefix rules)
        errors.AuthError: errors.BadRequest,
        errors.CoreUnavailable: errors.CryptoError,  # both "500 Server exception."
        errors.EnrollRefused: errors.BadRequest,  # only for Enroll
        errors.ConfigError: errors.InternalError,  # never on the wire
        errors.CoreStartError: errors.InternalError,
        errors.EhsmError: errors.InternalError,
    }

    def every(cls: type[errors.EhsmError]) -> Iterator[type[errors.EhsmError]]:
        yield cls
        for sub in cls.__subclasses__():
            if inspect.getmodule(sub) is errors:
                yield from every(sub)

    checked = 0
    for cls in every(errors.EhsmError):
        got = from_wire("Encrypt", cls().envelope())
        assert type(got) is same_wire.get(cls, cls), cls
        checked += 1
    assert checked > 30
    assert error_class("Enroll", 400, "enrollment is closed on this server") is errors.EnrollRefused
    assert error_class("Encrypt", 400, "Parameter invalid, The keyid length error.") is errors.PayloadError
    assert error_class("Encrypt", 400, None) is errors.UnknownApp  # the original sends no message
    assert error_class("Encrypt", 418, "teapot") is errors.BadRequest
    assert error_class("GetSecretValue", 400, "Can't find the x's value.").__name__ == "SecretNotFound"
