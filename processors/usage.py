"""What the vision requests used, as the API reported it, and what that costs by a price table.

The chat API reports input tokens with their image, text and cached parts (a server that does not
break them down leaves the parts at 0), and output tokens (reasoning included). The cost is an estimate: prices
change and differ per account, so the table is a setting (``DODOLENS_PRICES``) over these defaults,
in US dollars per million tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    cached_input: float
    output: float


DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-5.4-mini": Price(0.75, 0.075, 4.50),
    "gpt-5.4": Price(2.50, 0.25, 15.00),
    "gpt-5-mini": Price(0.25, 0.025, 2.00),
    "gpt-5": Price(1.25, 0.125, 10.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "gpt-4o": Price(2.50, 1.25, 10.00),
}


def parse_prices(text: str) -> dict[str, Price]:
    """The price table setting: JSON ``{"model": [input, cached input, output], ...}``, over the defaults."""
    prices = dict(DEFAULT_PRICES)
    if not text.strip():
        return prices
    try:
        table = orjson.loads(text)
        for model, values in table.items():
            numbers = [float(v) for v in values]
            if len(numbers) != 3 or min(numbers) < 0:
                raise ValueError(f"{model}: three prices, none negative")
            prices[str(model)] = Price(*numbers)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f'prices must be JSON like {{"gpt-5.4-mini": [0.75, 0.075, 4.5]}} ({exc})') from None
    return prices


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``, or of the longest known name it is a dated snapshot of (``gpt-4o-mini-2024-07-18``)."""
    if model in prices:
        return prices[model]
    known = [name for name in prices if model.startswith(name + "-")]
    return prices[max(known, key=len)] if known else None


@dataclass
class Usage:
    """Summed over the vision requests of one analysis, retried and split batches included."""

    requests: int = 0
    frames_sent: int = 0
    input_tokens: int = 0
    image_tokens: int = 0
    text_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, completion: Any, *, frames: int) -> None:
        usage = getattr(completion, "usage", None)
        self.requests += 1
        self.frames_sent += frames
        self.input_tokens += _count(usage, "prompt_tokens")
        self.output_tokens += _count(usage, "completion_tokens")
        details = getattr(usage, "prompt_tokens_details", None)
        self.image_tokens += _count(details, "image_tokens")
        self.text_tokens += _count(details, "text_tokens")
        self.cached_tokens += _count(details, "cached_tokens")
        self.reasoning_tokens += _count(getattr(usage, "completion_tokens_details", None), "reasoning_tokens")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def cost_usd(self, model: str, prices: Mapping[str, Price]) -> float | None:
        """The estimated cost, or None when the table has no price for ``model``."""
        price = price_for(model, prices)
        if price is None:
            return None
        cached = min(self.cached_tokens, self.input_tokens)
        dollars = ((self.input_tokens - cached) * price.input + cached * price.cached_input
                   + self.output_tokens * price.output) / TOKENS_PER_PRICE_UNIT
        return round(dollars, 6)


def _count(usage: Any, name: str) -> int:
    value = getattr(usage, name, 0)
    return value if isinstance(value, int) and value > 0 else 0
