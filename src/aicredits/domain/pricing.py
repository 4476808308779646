"""Prices in micro-INR per unit, and a call's cost rounded up once.

A USD catalog price p (per 1M tokens) costs p * usd_inr * (1 + markup) micro-INR per token:
usd = t * p / 1e6, inr = usd * rate * (1 + markup), micros = inr * 1e6. INR-priced entries
skip the rate. Every cost is an exact Fraction until `ceil_fraction` makes it an int.

Prompt-size tiers (catalog `tiers`): the whole call is priced at the tier its total prompt
selects (`TokenUsage.total_prompt_tokens` > the tier's `above_prompt_tokens`), one ceil per
call as always. Holds take `dearest_up_to` (domain/reservation.py, `hold_prices`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cached_property
from math import lcm

from aicredits.domain.catalog import ModelSpec, PriceTier
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
    def total_prompt_tokens(self) -> int:
        """The prompt that selects a price tier: uncached + cache reads + cache writes, as the
        provider reported it (never less than the cache buckets, should a caller build a usage
        whose prompt_tokens leaves them out)."""
        return max(self.prompt_tokens,
                   self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens)

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens
                   - self.cache_write_1h_tokens)


@dataclass(frozen=True)
class TokenPrices:
    """Micro-INR per token for each bucket. The five fields are the base tier's prices;
    `tiers` holds (above_prompt_tokens, flat prices of a whole call above it), thresholds
    strictly increasing. `max_input` and the fields alone describe the base tier only: a
    hold must use `dearest_up_to(prompt bound)` instead."""
    input: Fraction
    output: Fraction
    cache_read: Fraction
    cache_write: Fraction
    cache_write_1h: Fraction
    tiers: tuple[tuple[int, TokenPrices], ...] = ()

    @cached_property
    def max_input(self) -> Fraction:     # read by every hold: computed once per price set
        return max(self.input, self.cache_read, self.cache_write, self.cache_write_1h)

    def at(self, prompt_tokens: int) -> TokenPrices:
        """The flat prices (no tiers) of a call whose total prompt has this many tokens: the last
        tier whose threshold it exceeds (a prompt of exactly the threshold stays below it)."""
        chosen = None
        for above, prices in self.tiers:
            if prompt_tokens <= above:
                break
            chosen = prices
        if chosen is not None:
            return chosen
        return replace(self, tiers=()) if self.tiers else self

    def dearest_up_to(self, prompt_tokens: int) -> TokenPrices:
        """Bucket by bucket the dearest flat prices of every tier a prompt of at most
        `prompt_tokens` tokens can be billed at (flat; the base tier is always reachable)."""
        reachable = [self.at(0)] + [p for above, p in self.tiers if above < prompt_tokens]
        return reachable[0] if len(reachable) == 1 else _bucket_max(reachable)

    @cached_property
    def _over_common(self) -> tuple[int, int, int, int, int, int]:
        """(input, cache_read, cache_write, cache_write_1h, output) as integer numerators over
        one common denominator, then that denominator: a cost is then integer sums, exact."""
        buckets = (self.input, self.cache_read, self.cache_write, self.cache_write_1h, self.output)
        d = lcm(*(b.denominator for b in buckets))
        i, r, w, w1, o = (b.numerator * (d // b.denominator) for b in buckets)
        return i, r, w, w1, o, d

    def _numerator(self, usage: TokenUsage) -> tuple[int, int]:
        p = self     # the base tier unless the prompt passes a threshold (as `at`, without a copy)
        n = usage.total_prompt_tokens
        for above, prices in self.tiers:
            if n <= above:
                break
            p = prices
        i, r, w, w1, o, d = p._over_common
        return (usage.uncached_prompt_tokens * i + usage.cache_read_tokens * r
                + usage.cache_write_tokens * w + usage.cache_write_1h_tokens * w1
                + usage.completion_tokens * o), d

    def exact_cost(self, usage: TokenUsage) -> Fraction:
        return Fraction(*self._numerator(usage))

    def cost(self, usage: TokenUsage) -> Micros:
        """`ceil_fraction(exact_cost(usage))`, in integers (no Fraction per call)."""
        n, d = self._numerator(usage)
        return -((-n) // d)


def _flat(p: ModelSpec | PriceTier, f: Fraction) -> TokenPrices:
    inp = (p.input or Fraction(0)) * f
    return TokenPrices(
        input=inp,
        output=(p.output or Fraction(0)) * f,
        cache_read=p.cache_read * f if p.cache_read is not None else inp,
        cache_write=p.cache_write * f if p.cache_write is not None else inp,
        cache_write_1h=p.cache_write_1h * f if p.cache_write_1h is not None else inp,
    )


def token_prices(spec: ModelSpec, rates: Rates) -> TokenPrices:
    f = rates.factor(spec.currency)
    base = _flat(spec, f)
    if not spec.tiers:
        return base
    return replace(base, tiers=tuple((t.above_prompt_tokens, _flat(t, f)) for t in spec.tiers))


def inr_rate_view(price: Fraction | None, spec: ModelSpec, rates: Rates) -> Fraction | None:
    """A per-1M catalog price as INR per 1M (for display)."""
    if price is None:
        return None
    return price * rates.factor(spec.currency)


def _bucket_max(prices: list[TokenPrices]) -> TokenPrices:
    return TokenPrices(
        input=max(p.input for p in prices),
        output=max(p.output for p in prices),
        cache_read=max(p.cache_read for p in prices),
        cache_write=max(p.cache_write for p in prices),
        cache_write_1h=max(p.cache_write_1h for p in prices),
    )


def max_prices(prices: list[TokenPrices]) -> TokenPrices:
    """Bucket by bucket the dearest of several models' prices: the hold for a fallback chain.
    With tiers, at every prompt size: the result's tiers are at the union of the models'
    thresholds, so `max_prices(ps).at(n)` is the bucket-wise max of every `p.at(n)`."""
    base = _bucket_max([p.at(0) for p in prices])
    thresholds = sorted({above for p in prices for above, _ in p.tiers})
    if not thresholds:
        return base
    return replace(base, tiers=tuple((above, _bucket_max([p.at(above + 1) for p in prices]))
                                     for above in thresholds))


def chars_cost(spec: ModelSpec, rates: Rates, chars: int) -> Micros:
    """Speech: characters x the per-1M-characters price."""
    return ceil_fraction(chars * (spec.per_1m_chars or Fraction(0)) * rates.factor(spec.currency))


def audio_seconds_cost(spec: ModelSpec, rates: Rates, seconds: int) -> Micros:
    """Transcription: whole seconds (rounded up once by the caller) x the per-minute price."""
    per_minute = spec.per_minute or Fraction(0)
    return ceil_fraction(Fraction(seconds, 60) * per_minute * rates.factor(spec.currency) * 1_000_000)


def images_cost(spec: ModelSpec, rates: Rates, price: Fraction, n: int) -> Micros:
    return ceil_fraction(n * price * rates.factor(spec.currency) * 1_000_000)
