"""The table of core operations: op name -> handler. Handlers register themselves with :func:`handler`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call

Handler = Callable[["Enclave", "Call"], dict[str, Any]]

HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise RuntimeError(f"core operation {name!r} registered twice")
        HANDLERS[name] = fn
        return fn

    return register
