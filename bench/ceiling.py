"""The ceiling: a trivial endpoint on the same HTTP stack as ``ehsm-kms serve``.

Same uvicorn, same ``uvicorn.Config`` options as :mod:`ehsm_kms.cli.serve` (so the same HTTP protocol and event loop
implementations), same orjson, one process. It reads the body with the node's own function
(:func:`ehsm_kms.server.app.read_asgi_body`), parses the JSON and answers a small eHSM envelope: everything a request
costs before a KMS does any KMS work.

Run: ``python -m bench.ceiling --port 9100``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ehsm_kms import errors
from ehsm_kms.server.app import read_asgi_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    try:
        raw = await read_asgi_body(receive)
        parsed = orjson.loads(raw) if raw else {}
        result = {"code": 200, "message": "success!", "result": {"fields": len(parsed)}}
    except errors.EhsmError as exc:
        result = exc.envelope()
    except orjson.JSONDecodeError:
        result = {"code": 400, "message": "Invalid JSON", "result": {}}
    body = orjson.dumps(result)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=30,
        )
    )
    server.run()


if __name__ == "__main__":
    main()
