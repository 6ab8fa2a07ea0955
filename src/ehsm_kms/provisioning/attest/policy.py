"""Policies from TOML or JSON documents, one kind per document.

::

    kind = "sgx-dcap"                      # or "tdx", "tpm2", "none"
    mr_signer = ["815f42f1...e0e6"]        # sgx-dcap: mr_enclave / mr_signer (at least one), isv_prod_id,
    isv_prod_id = 0                        #   min_isv_svn, allow_debug (false), allowed_status (["UpToDate"])
    min_isv_svn = 0
    allowed_status = ["UpToDate", "SWHardeningNeeded"]

    kind = "tdx"                           # tdx: mr_td (required), [rtmr] 0 = "hex" ..., allow_debug,
    mr_td = ["91eb2b44...18b7"]            #   allowed_status
    [rtmr]
    0 = "44c0197b...c9c0"

    kind = "tpm2"                          # tpm2: [pcrs.<bank>] index = "hex", trusted_ak / trusted_ek
    trusted_ek = ["000b5c3e...", "-----BEGIN PUBLIC KEY-----\\n..."]   # TPM names or PEM public keys
    [pcrs.sha256]
    0 = "0000...0000"

The kind's module is imported only when a policy of that kind is loaded (the tpm2 one loads tpm2-pytss).
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ehsm_kms.provisioning.attest.base import KINDS, Policy
from ehsm_kms.provisioning.attest.errors import PolicyError

# kind -> (module, class) of its policy
_POLICIES = {
    "sgx-dcap": ("ehsm_kms.provisioning.attest.dcap", "SgxPolicy"),
    "tdx": ("ehsm_kms.provisioning.attest.dcap", "TdxPolicy"),
    "tpm2": ("ehsm_kms.provisioning.attest.tpm2", "Tpm2Policy"),
    "none": ("ehsm_kms.provisioning.attest.none", "NonePolicy"),
}


def policy_from_mapping(doc: Mapping[str, Any]) -> Policy:
    kind = doc.get("kind")
    if kind not in KINDS:
        raise PolicyError(f"a policy names its kind: one of {', '.join(KINDS)}")
    module, name = _POLICIES[kind]
    cls = getattr(importlib.import_module(module), name)
    fields = {k: v for k, v in doc.items() if k != "kind"}
    if kind == "none":
        if fields:
            raise PolicyError("a 'none' policy has no fields")
        policy: Policy = cls()
        return policy
    made: Policy = cls.from_mapping(fields)
    return made


def load_policy(source: str | Path) -> Policy:
    """A policy from a ``.toml`` or ``.json`` file, or from TOML/JSON text (a ``str`` starting with ``{`` is JSON)."""
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {source}: {exc.strerror}") from None
        is_json = source.suffix.lower() == ".json"
    else:
        text = source
        is_json = source.lstrip().startswith("{")
    try:
        doc = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"the policy is not valid {'JSON' if is_json else 'TOML'}: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyError("a policy is a table (TOML) or an object (JSON)")
    return policy_from_mapping(doc)
