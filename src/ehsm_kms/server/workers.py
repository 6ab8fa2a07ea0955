"""Several server processes on one port (``workers`` > 1).

One asyncio process is bound by its HTTP parsing, JSON and signature work to one core, so a node on a machine with
more cores runs more server processes. The parent reserves the port (a bound socket with ``SO_REUSEPORT`` that never
listens, so no other program can take the port and no connection is ever queued on it), forks the workers (before
it has started any thread or event loop, so forking is safe), and supervises them. Each worker listens on its own
``SO_REUSEPORT`` socket, and the kernel spreads new connections over them by a hash of the addresses (one shared
listening socket would let whichever worker is idle at that instant take most connections).

Each worker builds its own node in its own process: its own store connections
(SQLite in WAL mode takes writers from several processes; PostgreSQL does anyway) and, with the isolated core, its
own core child, which dies with it (``PR_SET_PDEATHSIG``). Nothing a request depends on is per process: replay
records, keys and apps are in the store, so a request refused by one worker is refused by all.

The parent holds no key: it reads nothing but the settings (and the sealer secret when it was typed at a prompt,
which the workers inherit through ``fork`` instead of through a file or the environment).

Supervision: SIGTERM or SIGINT to the parent is passed to every worker, which drain and stop (uvicorn's graceful
shutdown); a worker that dies is started again, unless workers keep dying (more than :data:`MAX_DEATHS` within
:data:`DEATH_WINDOW` seconds), which stops the node with an error rather than looping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("ehsm_kms.server")

MAX_DEATHS = 5
DEATH_WINDOW = 30.0
STOP_TIMEOUT = 40.0


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The parent's hold on the port: bound, never listening (OSError if the port is taken)."""
    return _socket(host, port)


def listen(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A worker's own listening socket on the reserved port."""
    sock = _socket(host, port)
    sock.listen(backlog)
    return sock


class Supervisor:
    """Forks ``count`` workers that each call ``run_worker()`` and keeps them running until told to stop.

    ``reserved`` is the parent's socket from :func:`reserve`; workers close their copy and open their own.
    """

    def __init__(self, reserved: socket.socket, count: int, run_worker: Callable[[], int]) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self._sock = reserved
        self._count = count
        self._run_worker = run_worker
        self._children: dict[int, int] = {}  # pid -> worker index
        self._stopping = False
        self._deaths: list[float] = []

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self._sock.close()
                code = self._run_worker()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = index
        log.info("worker %d started (pid %d)", index, pid)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """Run until stopped; 0 after a clean stop, 1 when workers kept dying."""
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self._count):
                self._spawn(index)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._sock.close()

    def _watch(self) -> int:
        failed = False
        deadline: float | None = None
        while self._children:
            if self._stopping and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if deadline is not None and time.monotonic() > deadline:
                    self._kill_all()
                time.sleep(0.1)
                continue
            index = self._children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                log.info("worker %d (pid %d) stopped with %d", index, pid, code)
                continue
            log.error("worker %d (pid %d) exited with %d", index, pid, code)
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < DEATH_WINDOW] + [now]
            if len(self._deaths) > MAX_DEATHS:
                log.error("workers keep dying (%d in %.0f s): stopping the node", len(self._deaths), DEATH_WINDOW)
                failed = True
                self._signal(signal.SIGTERM, None)
                continue
            self._spawn(index)
        return 1 if failed else 0

    def _kill_all(self) -> None:
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


__all__ = ["Supervisor", "listen", "reserve"]
