"""The access log's batches: the line format of the rest of the log, nothing written per request, a batch written
after its interval or when full, and on shutdown; no line when the logger is above INFO."""

from __future__ import annotations

import asyncio
import io
import logging
import re

from ehsm_kms.server.accesslog import AccessLog

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ehsm_kms\.server request id=r(\d+) action=Encrypt appid=app-1 "
    r"code=200 ms=1\.50 client=127\.0\.0\.1:5$"
)


def _logger(level: int) -> logging.Logger:
    logger = logging.getLogger(f"tests.accesslog.{level}")
    logger.setLevel(level)
    return logger


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_lines_wait_for_their_batch_and_keep_the_log_format() -> None:
    out = io.StringIO()
    access = AccessLog(interval_s=0.05, max_lines=1000, stream=out, logger=_logger(logging.INFO))

    async def serve() -> tuple[list[str], list[str]]:
        for i in range(10):
            access.request(f"r{i}", "Encrypt", "app-1", 200, 0.0015, "127.0.0.1:5")
        during = _lines(out)
        await asyncio.sleep(0.2)  # the batch's timer has fired
        return during, _lines(out)

    during, after = asyncio.run(serve())
    assert during == []
    assert [int(m.group(1)) for m in map(LINE.match, after) if m] == list(range(10)), after


def test_a_full_batch_is_written_at_once_and_the_rest_on_flush() -> None:
    out = io.StringIO()
    access = AccessLog(interval_s=60, max_lines=4, stream=out, logger=_logger(logging.INFO))

    async def serve() -> list[int]:
        counts = []
        for i in range(10):
            access.request(f"r{i}", "Encrypt", "app-1", 200, 0.0015, "127.0.0.1:5")
            counts.append(len(_lines(out)))
        return counts

    assert asyncio.run(serve()) == [0, 0, 0, 4, 4, 4, 4, 8, 8, 8]
    access.flush()  # what the server does on shutdown
    assert len(_lines(out)) == 10 and all(LINE.match(line) for line in _lines(out))


def test_no_line_above_info() -> None:
    out = io.StringIO()
    access = AccessLog(stream=out, logger=_logger(logging.WARNING))
    access.request("r1", "Encrypt", "app-1", 200, 0.0015, "127.0.0.1:5")
    access.flush()
    assert out.getvalue() == ""
