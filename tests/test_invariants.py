"""DESIGN invariant 1 as code structure: key primitives are imported only under ``src/ehsm_kms/core/``.

Two checks: a static one over every source file (``cryptography.hazmat``, the SM2 library and PKCS#11 are imported
nowhere else), and a dynamic one: the modules a KMS server process loads in the isolated mode do not load them at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ehsm_kms"
FORBIDDEN = ("cryptography.hazmat", "gmssl", "gmssl_pyx", "pkcs11")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_key_primitives_are_imported_only_under_core() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    offenders = {
        str(path.relative_to(SRC)): [n for n in _imports(path) if _forbidden(n)]
        for path in files
        if (SRC / "core") not in path.parents
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}
    inside = [p for p in (SRC / "core").rglob("*.py") if any(_forbidden(n) for n in _imports(p))]
    assert inside, "the check must see the core's own imports"


def test_server_process_does_not_load_key_primitives() -> None:
    code = (
        "import sys\n"
        "import ehsm_kms.server.app, ehsm_kms.server.assemble, ehsm_kms.service.node, ehsm_kms.storage\n"
        "import ehsm_kms.service.keys, ehsm_kms.service.crypto, ehsm_kms.service.apps, ehsm_kms.cli.main\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
