"""The table of service actions: wire action name -> async handler, and what a handler returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ehsm_kms.core.protocol import SignedRequest
    from ehsm_kms.service.node import Node


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful result; ``message`` None means the action's usual success message."""

    result: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


Handler = Callable[["Node", "SignedRequest", dict[str, Any]], Awaitable[Outcome]]

HANDLERS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise RuntimeError(f"action {name!r} registered twice")
        HANDLERS[name] = fn
        return fn

    return register
