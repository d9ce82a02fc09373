"""Usage as the API reports it, and the estimated cost from a price table that is a setting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processors.usage import DEFAULT_PRICES, Price, Usage, parse_prices, price_for


def completion(prompt: int, completion_: int, *, cached: int = 0, image: int = 0, text: int = 0,
               reasoning: int = 0) -> SimpleNamespace:
    """What the openai client gives for a chat completion's ``usage`` (only the fields read)."""
    return SimpleNamespace(usage=SimpleNamespace(
        prompt_tokens=prompt, completion_tokens=completion_,
        prompt_tokens_details=SimpleNamespace(cached_tokens=cached, image_tokens=image, text_tokens=text),
        completion_tokens_details=SimpleNamespace(reasoning_tokens=reasoning),
    ))


def test_usage_sums_every_request_and_the_frames_each_sent():
    usage = Usage()
    usage.add(completion(1000, 200, cached=600, image=900, text=100, reasoning=64), frames=12)
    usage.add(completion(500, 50, image=450, text=50), frames=5)
    assert (usage.requests, usage.frames_sent) == (2, 17)
    assert (usage.input_tokens, usage.image_tokens, usage.text_tokens, usage.cached_tokens) == (1500, 1350, 150, 600)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (250, 64, 1750)


def test_a_server_that_reports_no_breakdown_leaves_the_parts_at_zero():
    usage = Usage()
    usage.add(SimpleNamespace(usage=SimpleNamespace(prompt_tokens=80, completion_tokens=20)), frames=1)
    usage.add(SimpleNamespace(usage=None), frames=1)
    assert (usage.input_tokens, usage.output_tokens, usage.image_tokens, usage.cached_tokens) == (80, 20, 0, 0)
    assert usage.requests == 2


def test_cached_input_is_priced_at_the_cached_rate():
    usage = Usage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000)
    assert usage.cost_usd("m", {"m": Price(input=1.0, cached_input=0.1, output=10.0)}) == pytest.approx(0.6 + 0.04 + 1.0)


def test_a_dated_snapshot_takes_the_price_of_its_model():
    assert price_for("gpt-4o-mini-2024-07-18", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("gpt-5.4-mini-2026-03-17", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-5.4-mini"]
    assert price_for("gpt-5.4-2026-03-05", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-5.4"]
    assert price_for("llava-local", DEFAULT_PRICES) is None
    assert Usage(input_tokens=5).cost_usd("llava-local", DEFAULT_PRICES) is None


def test_the_price_table_setting_overrides_and_extends_the_defaults():
    prices = parse_prices('{"gpt-5.4-mini": [1, 0.1, 5], "my-model": [0.2, 0.02, 0.8]}')
    assert prices["gpt-5.4-mini"] == Price(1.0, 0.1, 5.0)
    assert prices["my-model"] == Price(0.2, 0.02, 0.8)
    assert prices["gpt-4o"] == DEFAULT_PRICES["gpt-4o"]
    assert parse_prices("  ") == dict(DEFAULT_PRICES)


@pytest.mark.parametrize("text", ["not json", '["gpt-4o"]', '{"m": [1, 2]}', '{"m": [1, -2, 3]}', '{"m": "cheap"}'])
def test_a_price_table_that_cannot_be_read_is_refused(text):
    with pytest.raises(ValueError, match="prices must be JSON"):
        parse_prices(text)
