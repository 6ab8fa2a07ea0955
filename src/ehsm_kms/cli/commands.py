"""The client commands of ``ehsm-kms``, and the spellings of the original eHSM CLI as hidden aliases."""

from __future__ import annotations

import copy
from typing import Any

import click

from ehsm_kms.cli import (
    account,
    crypto,
    files,
    info,
    key_settings,  # noqa: F401 (adds its subcommands to `key`)
    keys,
    quote,
    remote_admin,
    secret,
)

# The original CLI's command names (contract section 9.1) -> our command, and defaults it implied.
LEGACY: dict[str, tuple[click.Command, dict[str, Any]]] = {
    "get-version": (info.version, {}),
    "list-key": (keys.list_keys, {}),
    "create-key": (keys.create, {}),
    "delete-key": (keys.delete, {}),
    "delete-all-key": (keys.delete_all, {}),
    "enable-key": (keys.enable, {}),
    "disable-key": (keys.disable, {}),
    "get-public-key": (keys.public_key, {}),
    "get-parameters-for-import": (keys.import_params, {}),
    "import-key-material": (keys.import_key, {}),
    "asymm-encrypt": (crypto.asym_encrypt, {}),
    "asymm-decrypt": (crypto.asym_decrypt, {}),
    "generate-data-key": (crypto.datakey_generate, {}),
    "generate-data-key-without-plaintext": (crypto.datakey_generate, {"no_plaintext": True}),
    "export-data-key": (crypto.datakey_export, {}),
}


def _alias(name: str, target: click.Command, defaults: dict[str, Any]) -> click.Command:
    alias = copy.copy(target)
    alias.name = name
    alias.hidden = True
    alias.context_settings = (
        {**target.context_settings, "default_map": dict(defaults)} if defaults else dict(target.context_settings)
    )
    return alias


def register(group: click.Group) -> None:
    for command in (
        account.enroll,
        account.profile,
        keys.key,
        keys.alias,
        crypto.encrypt,
        crypto.decrypt,
        crypto.reencrypt,
        crypto.asym_encrypt,
        crypto.asym_decrypt,
        crypto.sign,
        crypto.verify,
        crypto.datakey,
        crypto.random,
        crypto.mac,
        secret.secret,
        quote.quote,
        remote_admin.remote_admin,
        files.encrypt_file,
        files.decrypt_file,
        info.version,
        info.completion,
    ):
        group.add_command(command)
    for name, (target, defaults) in LEGACY.items():
        group.add_command(_alias(name, target, defaults))
