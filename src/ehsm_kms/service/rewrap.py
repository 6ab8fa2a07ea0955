"""Domain-key rotation (single mode) and the online rewrap of every DK-wrapped blob to the current DK version.

Online: the rewrap runs while every node keeps serving. It reads a batch of blobs still under an older DK version
(:mod:`ehsm_kms.storage.rewrap_base` lists the kinds), has the core rewrap them (each opened with its own row's
binding, as the operation that uses it would), and writes each back with compare-and-set: only if the row still
holds the blob read. A row that changed meanwhile (an APIKey rotation, a new admin credential) keeps its new value;
the next pass looks at it again and rewraps it if it is still under an old version. Old DK versions stay in the
ring, so a node whose cache (``key_cache_ttl_ms``) still holds the old blob of a row opens it as before.

Resumable: the store selects blobs by the DK version in their header, so a run that was killed and started again
reads only what is still to do; nothing already rewrapped is read or written again, and no checkpoint is needed.
Batches go in primary-key order after a cursor, so a batch is an index range and a pass ends.

A node's blobs are new under the DK version its core holds: a node that has not yet picked up a rotation (it does
within ``dk_refresh_interval_ms``, or at once when it meets a newer blob) could still write a blob under the old
version. So rewrap after every node holds the new version; ``--check`` (:func:`stale_counts`) says whether
anything is left, and running the rewrap again finishes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ehsm_kms import errors
from ehsm_kms.core.protocol import Call, SignedRequest
from ehsm_kms.core.specs import KeySpec, KeyUsage, Origin
from ehsm_kms.service import admin
from ehsm_kms.service.node import Node
from ehsm_kms.storage.rewrap_base import BLOB_KINDS, WrappedBlob

log = logging.getLogger("ehsm_kms.rewrap")

ROTATE_PAYLOAD: Final = {"rotate": "domain-key"}  # as core.ops_ring.ROTATE_PAYLOAD: what the admin signs
MAX_PASSES: Final = 5

Progress = Callable[["RewrapReport", str], None]
BeforeWrite = Callable[[str, list[WrappedBlob]], Awaitable[None]]


@dataclass
class RewrapReport:
    dk_version: int
    rewrapped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BLOB_KINDS, 0))
    changed_meanwhile: int = 0  # compare-and-set found another blob in the row: left alone, looked at again
    failed: list[str] = field(default_factory=list)  # "kind keyid version": blobs that do not open under their row
    remaining: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    passes: int = 0

    @property
    def total(self) -> int:
        return sum(self.rewrapped.values())

    @property
    def complete(self) -> bool:
        return not self.failed and not any(self.remaining.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "dk_version": self.dk_version,
            "rewrapped": self.rewrapped,
            "changed_meanwhile": self.changed_meanwhile,
            "failed": self.failed,
            "remaining": self.remaining,
            "batches": self.batches,
            "passes": self.passes,
        }


async def ring_status(node: Node) -> dict[str, Any]:
    """The core's ring: ``dk_version`` (0 while it waits for one), ``versions``, ``mode``."""
    return await node.core.call(Call(op="ring_status"))


async def current_dk_version(node: Node) -> int:
    version = int((await ring_status(node))["dk_version"])
    if not version:
        raise errors.CoreUnavailable("the core holds no domain key yet")
    return version


async def stale_counts(node: Node, dk_version: int | None = None) -> dict[str, int]:
    """How many blobs of each kind are under another DK version than ``dk_version`` (the core's by default)."""
    version = dk_version if dk_version is not None else await current_dk_version(node)
    return await node.store.count_stale_blobs(version)


def _item(row: WrappedBlob) -> dict[str, Any]:
    """What the core builds the row's binding from (the wire numbers of the spec, usage and origin)."""
    item: dict[str, Any] = {"kind": row.kind, "keyid": row.keyid, "appid": row.appid, "blob": row.blob}
    if row.kind == "cmk":
        item.update(
            keyspec=int(KeySpec[row.keyspec]),
            usage=int(KeyUsage[row.usage]),
            origin=int(Origin[row.origin]),
            version=row.version,
        )
    elif row.kind == "import":
        item.update(keyspec=int(KeySpec[row.keyspec]), version=row.version)
    return item


async def _batch(
    node: Node, report: RewrapReport, kind: str, rows: list[WrappedBlob], hook: BeforeWrite | None
) -> None:
    try:
        items = [_item(row) for row in rows]
    except KeyError:  # a spec name this version does not know: cannot be one of our blobs
        raise errors.InternalError("a stored key names an unknown key spec") from None
    made = await node.core.call(Call(op="rewrap_blobs", args={"items": items}))
    report.dk_version = max(report.dk_version, int(made["dk_version"]))
    changes: list[tuple[WrappedBlob, bytes]] = []
    for row, new in zip(rows, made["blobs"], strict=True):
        if new is None:
            if (name := f"{kind} {row.keyid} {row.version}") not in report.failed:
                report.failed.append(name)
            log.error(
                "rewrap: the %s blob of %s (version %d) does not open under its row", kind, row.keyid, row.version
            )
        elif new != row.blob:
            changes.append((row, new))
    if hook is not None:
        await hook(kind, rows)
    updated = await node.store.replace_blobs(kind, changes)
    report.rewrapped[kind] += updated
    report.changed_meanwhile += len(changes) - updated
    report.batches += 1


async def rewrap_all(
    node: Node,
    *,
    batch_size: int = 200,
    pause_s: float = 0.0,
    progress: Progress | None = None,
    before_write: BeforeWrite | None = None,
) -> RewrapReport:
    """Rewrap every blob under an older DK version to the core's current one (module docstring).

    ``pause_s`` between batches keeps a big rewrap from crowding out traffic; ``before_write`` is a test hook run
    between the read of a batch and its write.
    """
    if batch_size < 1:
        raise errors.ConfigError("the batch size is at least 1")
    report = RewrapReport(dk_version=await current_dk_version(node))
    for _ in range(MAX_PASSES):
        report.passes += 1
        changed_before = report.changed_meanwhile
        for kind in BLOB_KINDS:
            after: tuple[str, int] | None = None
            while True:
                rows = await node.store.stale_blobs(kind, report.dk_version, after, batch_size)
                if not rows:
                    break
                after = rows[-1].cursor
                await _batch(node, report, kind, rows, before_write)
                if progress is not None:
                    progress(report, kind)
                if pause_s > 0:
                    await asyncio.sleep(pause_s)
        if report.changed_meanwhile == changed_before:
            break  # nothing changed under us in this pass: a further one would find only what failed
    report.remaining = await node.store.count_stale_blobs(report.dk_version)
    return report


async def rotate_dk(node: Node, admin_id: str, admin_key: str) -> dict[str, Any]:
    """Single mode: a new DK version, saved through the sealer by the core; signed with the admin credential."""
    req: SignedRequest = admin.signed_admin_request(admin_id, admin_key, dict(ROTATE_PAYLOAD), node.clock_ms())
    cred = await admin.authenticate(node, req)
    return await node.core.call(Call(op="rotate_dk", auth=req, app=cred))


__all__ = ["RewrapReport", "current_dk_version", "rewrap_all", "ring_status", "rotate_dk", "stale_counts"]
