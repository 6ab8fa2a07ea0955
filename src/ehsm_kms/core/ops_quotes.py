"""Core operation of the remote-attestation actions: the ``sign`` of a VerifyQuote result (contract section 7).

``sign = base64(HMAC-SHA256(apikey, params_sort_str(result)))`` over the result object
``{nonce, result, mr_enclave, mr_signer}``; it needs the app's APIKey, which only the core holds. The quote is
verified outside the core (dcap-qvl, in the service), so the core does not take the outer layer's word for
everything it signs:

* the request must carry the app's valid signature (as for every operation);
* the echoed ``nonce`` must be the one of the signed payload;
* ``mr_enclave`` and ``mr_signer`` must be the bytes at the quote's report-body offsets (112..143, 176..207) of the
  quote in the signed payload;
* the result object has exactly these four fields, of the contract's types.

What the core cannot check is the DCAP status (``result``): that is the service's verification.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from ehsm_kms import errors
from ehsm_kms.core.enclave_util import b64decode
from ehsm_kms.core.registry import handler
from ehsm_kms.wire import sign as wire_sign

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call

RESULT_FIELDS: Final = frozenset({"nonce", "result", "mr_enclave", "mr_signer"})
MR_ENCLAVE: Final = slice(112, 144)
MR_SIGNER: Final = slice(176, 208)
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


def _checked(result: Any, payload: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(result, dict) or set(result) != RESULT_FIELDS:
        raise errors.CryptoError()
    status = result["result"]
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 0xFFFF:
        raise errors.CryptoError()
    if not isinstance(result["nonce"], str) or result["nonce"] != payload.get("nonce"):
        raise errors.CryptoError()
    quote = b64decode(payload.get("quote"))
    for field, where in (("mr_enclave", MR_ENCLAVE), ("mr_signer", MR_SIGNER)):
        value = result[field]
        if not isinstance(value, str) or not _HEX64.fullmatch(value) or quote[where].hex() != value:
            raise errors.CryptoError()
    return result


@handler("sign_quote_result")
def sign_quote_result(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)  # checks the request's signature first
    result = _checked(call.args.get("result"), payload)
    if call.app is None:  # pragma: no cover - payload() refused it already
        raise errors.SignError()
    key = enc.apikey(call.app)
    return {"sign": wire_sign.signature(key.reveal(), wire_sign.render(result))}
