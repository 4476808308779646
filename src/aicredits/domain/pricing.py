"""Prices in micro-INR per unit, and a call's cost rounded up once.

A USD catalog price p (per 1M tokens) costs p * usd_inr * (1 + markup) micro-INR per token:
usd = t * p / 1e6, inr = usd * rate * (1 + markup), micros = inr * 1e6. INR-priced entries
skip the rate. Every cost is an exact Fraction until `ceil_fraction` makes it an int.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.money import Micros, ceil_fraction


@dataclass(frozen=True)
class Rates:
    usd_inr: Fraction
    markup: Fraction

    def factor(self, currency: str) -> Fraction:
        """Micro-INR per (catalog price unit x 1e-6): converts a per-1M price to per-unit micros."""
        base = self.usd_inr if currency == "USD" else Fraction(1)
        return base * (1 + self.markup)


@dataclass(frozen=True)
class TokenUsage:
    """A chat or embeddings call's tokens in OpenAI's meaning: prompt_tokens includes cache
    reads and writes; completion_tokens includes reasoning."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0       # 5-minute writes
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens
                   - self.cache_write_1h_tokens)


@dataclass(frozen=True)
class TokenPrices:
    """Micro-INR per token for each bucket."""
    input: Fraction
    output: Fraction
    cache_read: Fraction
    cache_write: Fraction
    cache_write_1h: Fraction

    @property
    def max_input(self) -> Fraction:
        return max(self.input, self.cache_read, self.cache_write, self.cache_write_1h)

    def exact_cost(self, usage: TokenUsage) -> Fraction:
        return (usage.uncached_prompt_tokens * self.input
                + usage.cache_read_tokens * self.cache_read
                + usage.cache_write_tokens * self.cache_write
                + usage.cache_write_1h_tokens * self.cache_write_1h
                + usage.completion_tokens * self.output)

    def cost(self, usage: TokenUsage) -> Micros:
        return ceil_fraction(self.exact_cost(usage))


def token_prices(spec: ModelSpec, rates: Rates) -> TokenPrices:
    f = rates.factor(spec.currency)
    inp = (spec.input or Fraction(0)) * f
    return TokenPrices(
        input=inp,
        output=(spec.output or Fraction(0)) * f,
        cache_read=spec.cache_read * f if spec.cache_read is not None else inp,
        cache_write=spec.cache_write * f if spec.cache_write is not None else inp,
        cache_write_1h=spec.cache_write_1h * f if spec.cache_write_1h is not None else inp,
    )


def inr_rate_view(price: Fraction | None, spec: ModelSpec, rates: Rates) -> Fraction | None:
    """A per-1M catalog price as INR per 1M (for display)."""
    if price is None:
        return None
    return price * rates.factor(spec.currency)


def max_prices(prices: list[TokenPrices]) -> TokenPrices:
    """Bucket by bucket the dearest of several models' prices: the hold for a fallback chain."""
    return TokenPrices(
        input=max(p.input for p in prices),
        output=max(p.output for p in prices),
        cache_read=max(p.cache_read for p in prices),
        cache_write=max(p.cache_write for p in prices),
        cache_write_1h=max(p.cache_write_1h for p in prices),
    )


def chars_cost(spec: ModelSpec, rates: Rates, chars: int) -> Micros:
    """Speech: characters x the per-1M-characters price."""
    return ceil_fraction(chars * (spec.per_1m_chars or Fraction(0)) * rates.factor(spec.currency))


def audio_seconds_cost(spec: ModelSpec, rates: Rates, seconds: int) -> Micros:
    """Transcription: whole seconds (rounded up once by the caller) x the per-minute price."""
    per_minute = spec.per_minute or Fraction(0)
    return ceil_fraction(Fraction(seconds, 60) * per_minute * rates.factor(spec.currency) * 1_000_000)


def image_price(spec: ModelSpec, size: str, quality: str) -> Fraction | None:
    """The catalog price of one image of this size and quality (None when not priced)."""
    by_quality = spec.per_image.get(size)
    if not by_quality:
        return None
    return by_quality.get(quality)


def images_cost(spec: ModelSpec, rates: Rates, price: Fraction, n: int) -> Micros:
    return ceil_fraction(n * price * rates.factor(spec.currency) * 1_000_000)
