"""The access log: one line per request (request id, action, appid, result code, milliseconds, client), never a
payload, written in batches.

A ``logging`` call per request cost about 40 % of Encrypt throughput (docs/performance-notes.md): making the
record and formatting it is the smaller part; the larger is its write to standard error, a system call per
request that hands the GIL to the store's writer thread and waits to get it back. So lines are formatted here, in
the log's own format (``<time> INFO ehsm_kms.server request ...``, as :func:`ehsm_kms.cli.main.setup_logging` sets
it), kept in memory and written together: at most ``interval_s`` after the first line of a batch, or at once when
``max_lines`` are waiting, and on shutdown. A node killed with SIGKILL loses at most that last batch of lines; the
audit log (durable before every answer) is the record of requests, this one is for operators.

Lines are written only while the ``ehsm_kms.server`` logger is enabled for INFO (``--log-level warning`` turns
them off, as does ``--no-access-log``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO

_LOGGER = "ehsm_kms.server"


class AccessLog:
    def __init__(
        self,
        *,
        interval_s: float = 0.05,
        max_lines: int = 256,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._interval_s = interval_s
        self._max_lines = max_lines
        self._stream = stream
        self._logger = logger or logging.getLogger(_LOGGER)
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        """The time as ``logging`` writes ``asctime`` (local time, milliseconds after a comma)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def request(self, request_id: str, action: str, appid: str, code: int, seconds: float, client: str) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        self._lines.append(
            f"{self._time()} INFO {_LOGGER} request id={request_id} action={action} appid={appid} "
            f"code={code} ms={seconds * 1000:.2f} client={client}\n"
        )
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self._interval_s, self.flush)
            except RuntimeError:  # no event loop (a direct call): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text, self._lines = "".join(self._lines), []
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # standard error closed or gone: the lines are lost, the requests are not
            pass
