"""Payload validation: every rule type, every exact message, every action's fields (contract section 3.1).

The expected behaviour comes from tests/data/payload_cases.json, written from the contract: a table of every
action's fields (checked against RULES) from which the per-field cases are generated, the message templates,
and hand-written cases with literal expected messages.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.wire import actions, payload
from ehsm_kms.wire.payload import RULES, RuleType, checked, normalize, validate
from tests.wire import load_data

DATA = load_data("payload_cases.json")
MESSAGES: dict[str, str] = DATA["messages"]
ENUMS: dict[str, list[str]] = DATA["enums"]
PATTERNS: dict[str, dict[str, list[str]]] = DATA["patterns"]
CONTRACT: dict[str, list[dict[str, Any]]] = DATA["contract"]


NOT_STRINGS: tuple[Any, ...] = (123, True, False, 0, 1.5, [], ["a"], {}, {"a": 1})
NOT_INTEGERS: tuple[Any, ...] = ("16", "1", True, False, 1.5, [], [1], {}, 1e21, -1e21, float("inf"))


def message(kind: str, field: dict[str, Any]) -> str:
    return MESSAGES[kind].format(key=field["key"], min=field.get("min"), max=field.get("max"))


def outcome(action: str, body: Any) -> str | None:
    try:
        validate(action, body)
    except errors.PayloadError as exc:
        assert exc.code == 400
        assert exc.envelope() == {"code": 400, "message": exc.message, "result": {}}
        return exc.message
    return None


def valid_value(field: dict[str, Any]) -> Any:
    kind = field["type"]
    if kind == "CONST":
        return ENUMS[field["values"]][0]
    if kind == "INT":
        return field.get("min", 1)
    if kind == "BASE64":
        return "QUJD"
    if "pattern" in field:
        return PATTERNS[field["pattern"]]["valid"][0]
    return "a" * max(field.get("min", 1), 1)


def baseline(action: str) -> dict[str, Any]:
    return {f["key"]: valid_value(f) for f in CONTRACT[action]}


def field_cases() -> Iterator[Any]:
    """(action, field key, value, expected message or None) for every field of every action."""
    for action, fields in CONTRACT.items():
        for field in fields:
            key, kind = field["key"], field["type"]

            def case(value: Any, expected: str | None, label: str) -> Any:
                return pytest.param(action, key, value, expected, id=f"{action}.{key}:{label}")  # noqa: B023

            missing = message("missing", field) if field["required"] else None
            yield case(valid_value(field), None, "valid")
            yield case(None, missing, "null")
            yield case("", missing, "empty")
            if kind in ("STRING", "BASE64"):
                for wrong in NOT_STRINGS:
                    yield case(wrong, message("string_type", field), f"type-{wrong!r}")
                hi, lo = field.get("max"), field.get("min")
                filler = "A" if kind == "BASE64" else "a"
                if hi is not None:
                    yield case(filler * (hi + 1), message("length", field), "max+1")
                    if "pattern" not in field:
                        expected_at_max = None if kind == "STRING" or hi % 4 == 0 else message("base64", field)
                        yield case(filler * hi, expected_at_max, "max")
                if lo is not None and lo > 1:
                    yield case(filler * (lo - 1), message("length", field), "min-1")
                if "pattern" in field:
                    for good in PATTERNS[field["pattern"]]["valid"]:
                        yield case(good, None, f"pattern-ok-{good!r}")
                    for bad in PATTERNS[field["pattern"]]["invalid"]:
                        lo_ok = lo is None or payload.utf16_len(bad) >= lo
                        hi_ok = hi is None or payload.utf16_len(bad) <= hi
                        want = message("format", field) if lo_ok and hi_ok else message("length", field)
                        yield case(bad, want, f"pattern-bad-{bad!r}")
                if kind == "BASE64":
                    for good in ("QQ==", "QUI=", "QUJD", "a+/9", "AAAAAAAA"):
                        yield case(good, None, f"b64-ok-{good}")
                    for bad in (
                        "QUJ",
                        "QU JD",
                        "QUJ\n",
                        "QU-_",
                        "Q===",
                        "====",
                        "QQ=A",
                        "QUJD\r\n\r\n",
                        "ÀÁÂÃ",
                    ):
                        too_long = hi is not None and payload.utf16_len(bad) > hi
                        want = message("length", field) if too_long else message("base64", field)
                        yield case(bad, want, f"b64-bad-{bad!r}")
            elif kind == "INT":
                lo, hi = field.get("min"), field.get("max")
                for wrong in NOT_INTEGERS:
                    yield case(wrong, message("integer_type", field), f"type-{wrong!r}")
                if lo is not None:
                    yield case(lo - 1, message("min_num", field), "min-1")
                    yield case(float(lo), None, "min-as-float")
                    yield case(-(2**69), message("min_num", field), "-2**69")  # -590295810358705700000
                    # JavaScript prints -2**70 as -1.1805916207174113e+21: not /^-?[0-9]*$/
                    yield case(-(2**70), message("integer_type", field), "-2**70")
                if hi is not None:
                    yield case(hi, None, "max")
                    yield case(hi + 1, message("max_num", field), "max+1")
                    yield case(2**64, message("max_num", field), "2**64")
                    yield case(10**21, message("integer_type", field), "10**21")
                    yield case(1e20, message("max_num", field), "1e20")
            else:  # CONST
                names = ENUMS[field["values"]]
                for good in names:
                    yield case(good, None, f"name-{good}")
                not_names: tuple[Any, ...] = (
                    "bogus",
                    names[0].lower(),
                    " " + names[0],
                    names[0] + " ",
                    1,
                    True,
                    [names[0]],
                )
                for wrong in not_names:
                    yield case(wrong, message("const", field), f"bad-{wrong!r}")


@pytest.mark.parametrize(("action", "key", "value", "expected"), list(field_cases()))
def test_field(action: str, key: str, value: Any, expected: str | None) -> None:
    body = baseline(action)
    body[key] = value
    assert outcome(action, body) == expected


@pytest.mark.parametrize("action", list(CONTRACT))
def test_baseline_payloads_are_valid(action: str) -> None:
    assert outcome(action, baseline(action)) is None


@pytest.mark.parametrize("action", list(CONTRACT))
def test_absent_required_field_and_order(action: str) -> None:
    """A removed required field gives its message; with every field broken, the first one in order answers."""
    fields = CONTRACT[action]
    for field in fields:
        body = baseline(action)
        del body[field["key"]]
        assert outcome(action, body) == (message("missing", field) if field["required"] else None)
    required = [f for f in fields if f["required"]]
    if required:
        assert outcome(action, {}) == message("missing", required[0])
        assert outcome(action, None) == message("missing", required[0])
        assert outcome(action, []) == message("missing", required[0])
        broken = {f["key"]: {"not": "valid"} for f in fields}
        first = fields[0]
        kind = {"STRING": "string_type", "BASE64": "string_type", "INT": "integer_type", "CONST": "const"}
        assert outcome(action, broken) == message(kind[first["type"]], first)
    else:
        assert outcome(action, None) is None
        assert outcome(action, {}) is None


def expand(body: Any) -> Any:
    """``"<key>_len": n`` in a hand-written case stands for ``"<key>": "A" * n`` (valid base64, n chars)."""
    if not isinstance(body, dict):
        return body
    out = {}
    for key, value in body.items():
        if key.endswith("_len"):
            out[key.removesuffix("_len")] = "A" * value
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["note"])
def test_hand_written_cases(case: dict[str, Any]) -> None:
    body = expand(case["payload"])
    if case.get("normalize"):
        body = normalize(case["action"], body)
    assert outcome(case["action"], body) == case["message"]


# ---------------------------------------------------------------------------------------------- the table
def test_rules_match_the_contract_table() -> None:
    kinds = {
        "STRING": RuleType.STRING,
        "BASE64": RuleType.BASE64,
        "INT": RuleType.INT,
        "CONST": RuleType.CONST,
    }
    patterns = {"uuid": payload.UUID_PATTERN, "rotation": payload.ROTATION_PATTERN, "alias": payload.ALIAS_PATTERN}
    assert set(RULES) == set(CONTRACT)
    for action, fields in CONTRACT.items():
        rules = RULES[action]
        assert [r.key for r in rules] == [f["key"] for f in fields], action
        for rule, field in zip(rules, fields, strict=True):
            assert rule.kind is kinds[field["type"]], (action, rule.key)
            assert rule.required is field["required"], (action, rule.key)
            if rule.kind in (RuleType.STRING, RuleType.BASE64):
                assert (rule.min_length, rule.max_length) == (field.get("min"), field.get("max")), rule.key
                assert rule.pattern is patterns.get(field.get("pattern", "")), rule.key
            elif rule.kind is RuleType.INT:
                assert (rule.min_num, rule.max_num) == (field.get("min"), field.get("max")), rule.key
            else:
                assert rule.values == frozenset(ENUMS[field["values"]]), rule.key


def test_every_action_has_rules_and_rules_name_only_actions() -> None:
    names = set(actions.ACTIONS) - actions.UNAUTHENTICATED_ACTIONS
    # AttestNode is a GET action whose query parameter (the nonce) is checked by the same rules.
    assert set(RULES) == names | {"AttestNode"}


def test_enum_names_are_the_specs_names() -> None:
    from ehsm_kms.core import specs

    assert ENUMS["keyspec"] == list(specs.KeySpec.__members__)
    assert ENUMS["padding_mode"] == list(specs.PaddingMode.__members__)
    assert ENUMS["digest_mode"] == list(specs.DigestMode.__members__)


def test_rules_are_read_only() -> None:
    with pytest.raises(TypeError):
        RULES["CreateKey"] = ()  # type: ignore[index]


def test_utf16_len() -> None:
    assert payload.utf16_len("") == 0
    assert payload.utf16_len("abc") == 3
    assert payload.utf16_len("é") == 1
    assert payload.utf16_len("\U0001f600") == 2
    assert payload.utf16_len("\ud800") == 1  # a lone surrogate is one code unit


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("QQ==", True),
        ("QUI=", True),
        ("", False),
        ("QQ=", False),
        ("QQ===", False),
        ("Q", False),
        ("Q\nQ=", False),
    ],
)
def test_is_base64(text: str, ok: bool) -> None:
    assert payload.is_base64(text) is ok


# ---------------------------------------------------------------------------------------------- aliases
@pytest.mark.parametrize(
    ("action", "sent", "expected"),
    [
        ("ExportDataKey", {"keyid": "k", "old_data_key": "A"}, {"keyid": "k", "olddatakey_base": "A"}),
        ("ExportDataKey", {"olddatakey": "B"}, {"olddatakey_base": "B"}),
        ("ExportDataKey", {"olddatakey": "B", "old_data_key": "C"}, {"olddatakey_base": "B"}),
        ("ExportDataKey", {"olddatakey": "", "old_data_key": "C"}, {"olddatakey_base": "C"}),
        ("ExportDataKey", {"olddatakey_base": "X", "old_data_key": "C"}, {"olddatakey_base": "X"}),
        ("ExportDataKey", {"olddatakey_base": "", "old_data_key": "C"}, {"olddatakey_base": "C"}),
        ("ExportDataKey", {"olddatakey_base": None, "olddatakey": "B"}, {"olddatakey_base": "B"}),
        ("ExportDataKey", {"old_data_key": None}, {}),
        ("ExportDataKey", {"old_data_key": ""}, {}),
        ("ImportKeyMaterial", {"ImportToken": "T"}, {"importToken": "T"}),
        ("ImportKeyMaterial", {"ImportToken": "T", "importToken": "t"}, {"importToken": "t"}),
        (
            "DeleteSecret",
            {"secretName": "s", "force_delete": "true"},
            {"secretName": "s", "forceDelete": "true"},
        ),
        ("DeleteSecret", {"force_delete": "true", "forceDelete": "false"}, {"forceDelete": "false"}),
        # aliases belong to their action only
        ("Encrypt", {"old_data_key": "A", "force_delete": "x"}, {"old_data_key": "A", "force_delete": "x"}),
        ("DeleteSecret", {"ImportToken": "T"}, {"ImportToken": "T"}),
    ],
)
def test_normalize(action: str, sent: dict[str, Any], expected: dict[str, Any]) -> None:
    original = copy.deepcopy(sent)
    result = normalize(action, sent)
    assert result == expected
    assert sent == original  # never mutated: the signature covers what was sent
    assert result is not sent


def test_checked_normalizes_then_validates() -> None:
    sent = {
        "aad": "",
        "keyid": "aac3e45a-d3dc-4791-89b6-4ada0e38e6ef",
        "old_data_key": "QUJD",
        "ukeyid": "ec1ccb09-4dd5-4af9-b04b-a97c4613cd7e",
        "padding_mode": "EH_RSA_PKCS1_OAEP",
    }
    result = checked("ExportDataKey", sent)
    assert result["olddatakey_base"] == "QUJD"
    assert "old_data_key" not in result
    assert "old_data_key" in sent
    with pytest.raises(errors.PayloadError) as info:
        checked("ExportDataKey", ["QUJD"])
    assert info.value.message == "Missing required parameters, The keyid cannot be empty."
    assert checked("ListKey", None) == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(
    action=st.sampled_from(sorted(RULES)),
    data=st.dictionaries(
        st.sampled_from(sorted({r.key for rules in RULES.values() for r in rules} | {"old_data_key", "x"})),
        JSON,
    ),
)
def test_any_payload_passes_or_gets_a_payload_error(action: str, data: dict[str, Any]) -> None:
    try:
        checked(action, data)
    except errors.PayloadError as exc:
        assert exc.message is not None
        assert exc.message.startswith(("Missing required parameters, The ", "Parameter invalid, The "))
