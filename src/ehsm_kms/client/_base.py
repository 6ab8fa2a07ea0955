"""What ``Client`` and ``AsyncClient`` share: where the server and credentials come from, TLS, signing, and reading
answers. The two classes differ only in how they send.

Every signed request gets a fresh timestamp, a random nonce and its signature by the contract's rule
(:func:`ehsm_kms.wire.sign.sign_request`), also when it is a retry, so a retried request is never a replay.
"""

from __future__ import annotations

import random
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
import orjson

from ehsm_kms import __version__, config, errors
from ehsm_kms.client._calls import Call
from ehsm_kms.client.errors import ConnectionFailed, CredentialsMissing, ResponseError, from_wire
from ehsm_kms.wire.sign import sign_request

T = TypeVar("T")

URL_ENV = ("EHSM_KMS_URL", "EHSM_SERVER_URL")
APPID_ENV = ("EHSM_KMS_APPID", "EHSM_APPID")
APIKEY_ENV = ("EHSM_KMS_APIKEY", "EHSM_APIKEY")
CA_BUNDLE_ENV = ("EHSM_KMS_CA_BUNDLE",)
"""Environment variables the SDK reads when an argument is not given: ours first, then the original SDK's."""
ADMIN_ID_ENV = ("EHSM_KMS_ADMIN_ID",)
ADMIN_KEY_ENV = ("EHSM_KMS_ADMIN_KEY",)
"""The admin credential's variables (:class:`~ehsm_kms.client.AdminClient`)."""

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.2
MAX_BACKOFF = 5.0
# Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s) can close them under a request.
KEEPALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2.0)

# Failures where the request may not have reached the server or its answer was lost; repeated only for safe actions.
_RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)
_jitter = random.SystemRandom()


def env_first(names: tuple[str, ...]) -> str | None:
    for var in names:
        value = config.env_value(var)
        if value:
            return value
    return None


def endpoint(url: str) -> str:
    """The ``/ehsm`` resource of a server URL: ``https://h:9000``, ``https://h:9000/ehsm`` and ``.../ehsm/`` all
    name the same one (the original SDK wants ``/ehsm`` in its base URL, our examples leave it out)."""
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise errors.ConfigError(f"not a valid server URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise errors.ConfigError(f"the server URL must be http:// or https://host[:port]: {url!r}")
    path = parsed.path.rstrip("/")
    if not path.endswith("/ehsm"):
        path += "/ehsm"
    return str(parsed.copy_with(path=path, query=None, fragment=None))


def tls_verify(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    if ca_bundle:
        try:
            return ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(f"cannot load the CA bundle {ca_bundle}: {exc}") from None
    return True


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class ClientBase:
    """Settings and the request/answer halves common to both clients."""

    _appid_env: tuple[str, ...] = APPID_ENV
    _apikey_env: tuple[str, ...] = APIKEY_ENV

    def __init__(
        self,
        url: str | None,
        appid: str | None,
        apikey: str | None,
        *,
        ca_bundle: str | None,
        insecure: bool,
        timeout: float | httpx.Timeout | None,
        retries: int,
        backoff: float,
    ) -> None:
        given = url or env_first(URL_ENV)
        if not given:
            raise CredentialsMissing("no server URL: give url=..., or set EHSM_KMS_URL (or EHSM_SERVER_URL)")
        self._endpoint = endpoint(given)
        self._appid = appid if appid is not None else env_first(self._appid_env)
        self._apikey = apikey if apikey is not None else env_first(self._apikey_env)
        self._verify = tls_verify(ca_bundle if ca_bundle is not None else env_first(CA_BUNDLE_ENV), insecure)
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self._retries = retries
        self._backoff = backoff
        if timeout is None or isinstance(timeout, httpx.Timeout):
            self._timeout = timeout if timeout is not None else httpx.Timeout(None)
        else:
            self._timeout = httpx.Timeout(timeout, connect=min(float(timeout), DEFAULT_CONNECT_TIMEOUT))
        self._headers = {"user-agent": f"ehsm-kms-python/{__version__}", "accept": "application/json"}

    # ---------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        """The ``/ehsm`` endpoint requests go to."""
        return self._endpoint

    @property
    def appid(self) -> str | None:
        return self._appid

    @property
    def has_credentials(self) -> bool:
        return bool(self._appid and self._apikey)

    def set_credentials(self, appid: str, apikey: str) -> None:
        """Use these credentials from now on (``enroll`` does this for a client that had none)."""
        self._appid, self._apikey = appid, apikey

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._endpoint!r}, appid={self._appid!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds an APIKey and cannot be pickled")

    # ---------------------------------------------------------------- requests
    def _request_parts(self, call: Call[Any]) -> tuple[dict[str, str], bytes | None, dict[str, str]]:
        """Query, body and headers of one attempt: freshly timestamped, nonced and signed."""
        params = {"Action": call.action, **call.query}
        if not call.signed:
            return params, None, dict(self._headers)
        if not self._appid or not self._apikey:
            raise CredentialsMissing()
        timestamp = str(time.time_ns() // 1_000_000)
        nonce = secrets.token_hex(16)
        body: dict[str, Any] = {"appid": self._appid, "timestamp": timestamp, "nonce": nonce}
        if call.payload is not None:
            body["payload"] = call.payload
        body["sign"] = sign_request(self._apikey, self._appid, timestamp, call.payload, nonce)
        headers = dict(self._headers)
        headers["content-type"] = "application/json"
        return params, orjson.dumps(body), headers

    def _retry_delay(self, call: Call[Any], exc: httpx.HTTPError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if attempt >= self._retries or not call.safe or not isinstance(exc, _RETRYABLE) or _tls_failure(exc):
            return None
        base: float = min(MAX_BACKOFF, self._backoff * (2**attempt))
        return base * _jitter.uniform(0.5, 1.0)

    def _failed(self, call: Call[Any], exc: httpx.HTTPError) -> errors.EhsmError:
        if isinstance(exc, httpx.TransportError):
            what = "TLS verification failed" if _tls_failure(exc) else (str(exc) or type(exc).__name__)
            return ConnectionFailed(f"{call.action}: cannot reach the KMS at {self._endpoint}: {what}")
        return ResponseError(f"{call.action}: {exc}")

    def _answer(self, call: Call[T], response: httpx.Response) -> T:
        if response.status_code != 200:
            raise ResponseError(f"{call.action}: HTTP {response.status_code} from {self._endpoint}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ResponseError(f"{call.action}: the answer is not JSON") from None
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            raise ResponseError(f"{call.action}: the answer has no code")
        if code != 200:
            raise from_wire(call.action, body)
        result = body.get("result")
        return call.parse(result if isinstance(result, Mapping) else {})
