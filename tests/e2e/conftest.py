"""Live servers for the end-to-end suite: one per backend for the whole session, SQLite and PostgreSQL.

PostgreSQL comes from :mod:`tests.pg` (``EHSM_TEST_PG_DSN``, default 127.0.0.1:5432/test): every server gets
a schema of this run, and every schema of the run is dropped at the end. Without the database the PostgreSQL
half is skipped locally and *fails* under ``CI=true``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import App, Wire
from tests.live import ROOT, LiveServer
from tests.pg import PgRun, pg_run  # noqa: F401  (the session fixture, used through getfixturevalue)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@dataclass
class Stores:
    """Store URLs for this session: SQLite files under a temporary directory, PostgreSQL schemas of the run."""

    root: Path

    def url(self, request: pytest.FixtureRequest, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.root / name}.db"  # an absolute path: sqlite:////abs/path.db
        run: PgRun = request.getfixturevalue("pg_run")  # skips, or fails under CI=true, without a server
        return f"{run.dsn}?schema={run.new_schema()}"


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    return Stores(tmp_path_factory.mktemp("e2e-stores"))


@dataclass
class Kms:
    """A running server, its store URL and one connection pool to it."""

    server: LiveServer
    backend: str
    store_url: str
    wire: Wire

    def enroll(self) -> App:
        return self.wire.enroll()


def start_kms(request: pytest.FixtureRequest, backend: str, name: str, *extra: str) -> Kms:
    """Start a server on its own data directory and store; the caller stops it (:func:`stop_kms`)."""
    stores: Stores = request.getfixturevalue("stores")
    tmp_path_factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    store_url = stores.url(request, backend, name)
    server = LiveServer(tmp_path_factory.mktemp(f"e2e-{backend}-{name}"), store_url, extra=list(extra)).start()
    return Kms(server, backend, store_url, Wire(server.url))


def stop_kms(kms: Kms) -> None:
    kms.wire.close()
    code = kms.server.stop()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal to exit with it.
    assert code in (0, -signal.SIGTERM), f"server exited with {code}:\n{kms.server.log()[-4000:]}"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def kms(request: pytest.FixtureRequest, backend: str) -> Iterator[Kms]:
    """The session's server for this backend (open enrollment)."""
    made = start_kms(request, backend, "main", "--enroll-mode", "open")
    try:
        yield made
    finally:
        stop_kms(made)


@pytest.fixture
def app(kms: Kms) -> App:
    """A freshly enrolled app of its own for each test (ListKey and DeleteAllKey see only its keys)."""
    return kms.enroll()


@pytest.fixture
def other_app(kms: Kms) -> App:
    return kms.enroll()


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m ehsm_kms.cli.main ...`` in a subprocess, as an operator runs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ehsm_kms.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


# name -> (keyspec, usage): one key of each kind the crypto tests use, made once per backend.
KEYRING: dict[str, tuple[str, str]] = {
    "aes128": ("EH_AES_GCM_128", "ENCRYPT_DECRYPT"),
    "aes192": ("EH_AES_GCM_192", "ENCRYPT_DECRYPT"),
    "aes256": ("EH_AES_GCM_256", "ENCRYPT_DECRYPT"),
    "sm4ctr": ("EH_SM4_CTR", "ENCRYPT_DECRYPT"),
    "sm4cbc": ("EH_SM4_CBC", "ENCRYPT_DECRYPT"),
    "rsa2048": ("EH_RSA_2048", "ENCRYPT_DECRYPT"),
    "rsa3072": ("EH_RSA_3072", "ENCRYPT_DECRYPT"),
    "rsa4096": ("EH_RSA_4096", "ENCRYPT_DECRYPT"),
    "rsa2048s": ("EH_RSA_2048", "SIGN_VERIFY"),
    "rsa3072s": ("EH_RSA_3072", "SIGN_VERIFY"),
    "rsa4096s": ("EH_RSA_4096", "SIGN_VERIFY"),
    "p224": ("EH_EC_P224", "SIGN_VERIFY"),
    "p256": ("EH_EC_P256", "SIGN_VERIFY"),
    "p256k": ("EH_EC_P256K", "SIGN_VERIFY"),
    "p384": ("EH_EC_P384", "SIGN_VERIFY"),
    "p521": ("EH_EC_P521", "SIGN_VERIFY"),
    "p256e": ("EH_EC_P256", "ENCRYPT_DECRYPT"),
    "sm2": ("EH_SM2", "ENCRYPT_DECRYPT"),
    "sm2s": ("EH_SM2", "SIGN_VERIFY"),
    "hmac": ("EH_HMAC", "SIGN_VERIFY"),
}


@dataclass
class Keyring:
    """An app holding one key of each kind in :data:`KEYRING`; tests must not disable or delete them."""

    app: App
    ids: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


@pytest.fixture(scope="session")
def keyring(kms: Kms) -> Keyring:
    owner = kms.enroll()
    return Keyring(owner, {name: owner.create_key(spec, usage) for name, (spec, usage) in KEYRING.items()})
