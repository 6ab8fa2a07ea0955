"""The BYOK import token's public fields. Pure (no key material), so the service can read the token id too."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ehsm_kms import errors


def parse_import_token(token: Any) -> dict[str, Any]:
    """The fields of an import token (not secret); raises ImportTokenError for anything malformed."""
    if not isinstance(token, str) or not token:
        raise errors.ImportTokenError()
    try:
        fields = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise errors.ImportTokenError() from None
    if (
        not isinstance(fields, dict)
        or not isinstance(fields.get("keyid"), str)
        or not isinstance(fields.get("token_id"), str)
        or not isinstance(fields.get("expires"), int)
        or not isinstance(fields.get("dkv"), int)
        or not isinstance(fields.get("mac"), str)
    ):
        raise errors.ImportTokenError()
    return fields
