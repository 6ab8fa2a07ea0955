"""The ASGI application: ``/ehsm`` and ``/ehsm/`` with ``?Action=``, plus ``/healthz``, ``/readyz``, ``/metrics``.

A plain ASGI callable rather than a framework: the request path is short and hot (parse, check, one store read,
one core call, one group-committed write), and every outcome is HTTP 200 with the eHSM envelope. One place maps
exceptions to bodies (:func:`ehsm_kms.wire.envelope.error`). Logs carry a request id, the action, the appid and the
result code; never a request body, plaintext, key or secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from ehsm_kms import errors
from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.server.accesslog import AccessLog
from ehsm_kms.server.metrics import Metrics
from ehsm_kms.service import admin, apps, attestation, audit
from ehsm_kms.service.all_actions import HANDLERS
from ehsm_kms.service.node import Node
from ehsm_kms.service.scheduler import Scheduler
from ehsm_kms.wire import actions, envelope, payload, request

log = logging.getLogger("ehsm_kms.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

KMS_PATHS = frozenset({"/ehsm", "/ehsm/"})
_JSON = b"application/json"


class KmsApp:
    """The HTTP front of one node. ``startup``/``shutdown`` come from the lifespan (or the caller, in tests)."""

    def __init__(
        self,
        node_factory: Callable[[], Awaitable[Node]],
        *,
        enroll_mode: str,
        clock_ms: Callable[[], int] | None = None,
        scheduler_interval_s: float = 5.0,
        audit_fail_closed: bool = False,
        access_log: bool = True,
    ) -> None:
        self._node_factory = node_factory
        self.node: Node | None = None
        self.enroll_mode = enroll_mode
        self.metrics = Metrics()
        self.clock_ms: Callable[[], int] = clock_ms or (lambda: int(time.time() * 1000))
        self.draining = False
        self._id_prefix = uuid.uuid4().hex[:8]
        self._requests = 0
        self.scheduler_interval_s = scheduler_interval_s
        self.scheduler: Scheduler | None = None
        self.audit_fail_closed = audit_fail_closed
        self.access_log = access_log
        self._access = AccessLog()
        self._admin_task: asyncio.Task[None] | None = None

    def _request_id(self) -> str:
        """Unique per process and start: a random prefix and a counter (cheaper than a UUID per request)."""
        self._requests += 1
        return f"{self._id_prefix}{self._requests:08x}"

    async def startup(self) -> None:
        self.node = await self._node_factory()
        if self.node.core.ready:
            await admin.ensure_admin_credential(self.node)
        else:  # cluster mode, no domain key yet: serve /healthz (and 503 on /readyz) while the core waits
            self._admin_task = asyncio.create_task(self._admin_credential_when_ready(self.node))
        if self.scheduler_interval_s > 0:
            self.scheduler = Scheduler(
                self.node, interval_s=self.scheduler_interval_s, audit_fail_closed=self.audit_fail_closed
            )
            self.scheduler.start()
        log.info("ready; enroll_mode=%s", self.enroll_mode)

    async def _admin_credential_when_ready(self, node: Node) -> None:
        """The admin credential needs the core (it seals it): make it once the domain key arrived."""
        await node.core.wait_ready()
        delay = 0.1
        while True:
            try:
                await admin.ensure_admin_credential(node)
                return
            except errors.EhsmError as exc:
                log.warning("cannot make the admin credential yet: %s", exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def shutdown(self) -> None:
        self.draining = True
        if self._admin_task is not None:
            self._admin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._admin_task
            self._admin_task = None
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        node, self.node = self.node, None
        if node is not None:
            await node.core.close()
            await node.store.close()
        self._access.flush()  # the lines of requests answered while draining

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in KMS_PATHS or path not in ("/healthz", "/readyz", "/metrics"):
            await self._kms(scope, receive, send)
        elif path == "/healthz":
            await _respond(send, envelope.dumps({"status": "ok"}))
        elif path == "/readyz":
            await self._readyz(send)
        else:
            await _respond(send, self.metrics.render(self.node), content_type=b"text/plain; version=0.0.4")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except errors.EhsmError as exc:
                    log.error("start failed: %s", exc.message)
                    await send({"type": "lifespan.startup.failed", "message": exc.message or ""})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _readyz(self, send: Send) -> None:
        node = self.node
        # Not ready while the core has no domain key (cluster mode, waiting for the dkeycache) or restarts.
        ready = node is not None and not self.draining and node.core.ready
        if node is not None:
            start = time.perf_counter()
            try:
                await node.store.ping()
                self.metrics.store_latency.observe(time.perf_counter() - start)
            except errors.EhsmError:
                ready = False
        body = envelope.dumps({"status": "ready" if ready else "not ready"})
        await _respond(send, body, status=200 if ready else 503)

    # ---------------------------------------------------------------- the KMS
    async def _kms(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = self._request_id()
        client = _client(scope)
        trail = audit.begin(request_id, client)
        query = _query(scope.get("query_string", b"").decode("latin-1"))
        path: str = scope["path"]
        method: str = scope["method"]
        action_name = (query.get("Action") or [""])[0]
        appid = "-"
        try:
            if path not in KMS_PATHS:
                result = await self._unknown(await self._body(receive, scope))
            else:
                info = actions.lookup(action_name)
                if info is not None and info.method == "GET":
                    if method != "GET":
                        raise errors.ApiNotFound()
                    result = await self._get_action(info.name, query)
                else:
                    result, appid = await self._post_action(info, method, await self._body(receive, scope))
        except errors.EhsmError as exc:
            result = envelope.error(exc)
        except Exception:
            log.exception("request %s (%s) failed inside the server", request_id, action_name or "-")
            result = envelope.error(errors.InternalError())
        if path in KMS_PATHS:
            result = await audit.record(
                self.node, trail, action_name, result, request_id, client, fail_closed=self.audit_fail_closed
            )
        code = int(result.get("code", 500))
        seconds = time.perf_counter() - start
        self.metrics.observe(action_name if actions.lookup(action_name) else "unknown", code, seconds)
        if self.access_log:
            self._access.request(request_id, action_name or "-", appid, code, seconds, client)
        await _respond(send, envelope.dumps(result), request_id=request_id)

    @staticmethod
    async def _body(receive: Receive, scope: Scope) -> bytes:
        """The request body, empty unless it is ``application/json`` (express.json() parses only that media type,
        so the original saw ``{}`` for any other: "Missing required parameters")."""
        body = await read_asgi_body(receive)
        content_type = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
        return body if request.is_json_content_type(content_type.decode("latin-1")) else b""

    def _live_node(self) -> Node:
        if self.node is None:
            raise errors.CoreUnavailable()
        return self.node

    async def _get_action(self, name: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if name == "GetVersion":
            return envelope.success_for(name, apps.version())
        if name == "AttestNode":
            nonces = query.get("nonce")
            made_evidence = await attestation.attest_node(self._live_node(), nonces[0] if nonces else None)
            return envelope.success_for(name, made_evidence)
        tokens = query.get("token") or query.get("enroll_token")
        token = tokens[0] if tokens else None
        if self.audit_fail_closed:
            await audit.write_ahead(self._live_node(), name, None)
        made = await apps.enroll(self._live_node(), self.enroll_mode, token)
        return envelope.success_for(name, made)

    async def _unknown(self, body: bytes) -> dict[str, Any]:
        """Any other path: the original ran its auth checks on every path, so probes of ``/`` get a 400."""
        parsed = request.parse_json(body) if body else {}
        request.check_envelope(parsed, None, self.clock_ms())
        raise errors.ApiNotFound()

    async def _post_action(
        self, info: actions.ActionInfo | None, method: str, body: bytes
    ) -> tuple[dict[str, Any], str]:
        parsed = request.parse_json(body) if body else {}
        fields = request.check_envelope(parsed, info, self.clock_ms())
        audit.note_request(fields.appid, fields.payload)
        if info is not None:
            audit.join_replay(info.name)
        req = SignedRequest(
            appid=fields.appid,
            timestamp=fields.timestamp,
            sign=fields.sign,
            payload=fields.payload,
            nonce=fields.nonce,
        )
        node = self._live_node()
        handler = HANDLERS.get(info.name) if info is not None else None
        if info is None or method != "POST" or handler is None:
            # Authenticated, then "API Not Found", as the original's router did after its auth middleware.
            await node.verify(req, await node.app(req.appid))
            raise errors.ApiNotFound()
        normalized = payload.normalize(info.name, fields.payload if isinstance(fields.payload, dict) else {})
        payload.validate(info.name, normalized)
        if self.audit_fail_closed:
            await audit.write_ahead(node, info.name, normalized)
        outcome = await handler(node, req, normalized)
        if outcome.message is not None:
            return envelope.success(outcome.result, outcome.message), fields.appid
        return envelope.success_for(info.name, outcome.result), fields.appid


_QUERIES: dict[str, dict[str, list[str]]] = {}
_QUERIES_MAX = 1024


def _query(query_string: str) -> dict[str, list[str]]:
    """The parsed query string. Clients send the same few (``Action=Encrypt``) again and again: each is parsed
    once and kept (at most 1024, then the table starts afresh). Callers only read the result."""
    parsed = _QUERIES.get(query_string)
    if parsed is None:
        parsed = parse_qs(query_string, keep_blank_values=True)
        if len(_QUERIES) >= _QUERIES_MAX:
            _QUERIES.clear()
        _QUERIES[query_string] = parsed
    return parsed


async def read_asgi_body(receive: Receive) -> bytes:
    """The request body of an ASGI request, size-limited (:class:`~ehsm_kms.errors.BodyTooLarge` past the limit)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > request.MAX_BODY_BYTES:
            raise errors.BodyTooLarge()
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


async def _respond(
    send: Send,
    body: bytes,
    *,
    status: int = 200,
    content_type: bytes | None = None,
    request_id: str | None = None,
) -> None:
    headers = [
        (b"content-type", content_type or _JSON),
        (b"content-length", b"%d" % len(body)),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except OSError:  # the client went away
        pass
