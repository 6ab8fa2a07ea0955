"""GenerateRandom: 1 to 1024 bytes from the core's random source."""

from __future__ import annotations

import pytest

from tests.e2e import App, node_error, unb64


@pytest.mark.parametrize("length", [1, 32, 1024])
def test_lengths(app: App, length: int) -> None:
    out = app.call("GenerateRandom", {"length": length})
    assert out["code"] == 200 and out["message"] == "success!"
    assert list(out["result"]) == ["random"]
    assert len(unb64(out["result"]["random"])) == length


def test_draws_differ(app: App) -> None:
    draws = {app.ok("GenerateRandom", {"length": 32})["random"] for _ in range(20)}
    assert len(draws) == 20
    # 1 KiB of it is not obviously biased: every byte value appears, none far too often.
    data = b"".join(unb64(app.ok("GenerateRandom", {"length": 1024})["random"]) for _ in range(16))
    counts = [data.count(bytes([b])) for b in range(256)]
    assert min(counts) > 20 and max(counts) < 110


def test_bounds_and_auth(app: App) -> None:
    for length, message in ((0, "greater than or equal to 1"), (1025, "less than or equal to 1024")):
        out = app.call("GenerateRandom", {"length": length})
        assert out == node_error(400, f"Parameter invalid, The length value must be {message}.")
    assert app.call("GenerateRandom", {"length": "16"}) == node_error(
        400, "Parameter invalid, The length must be of integer type."
    )
    assert app.call("GenerateRandom", {}) == node_error(400, "Missing required parameters, The length cannot be empty.")
    assert app.call("GenerateRandom", {"length": 16}, apikey="x" * 32) == node_error(400, "sign error")
