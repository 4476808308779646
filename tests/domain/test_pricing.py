"""Token pricing: a call's cost is an exact rational rounded up once, in micro-INR.

The expected charge is computed independently here: prices, rate and markup are parsed
with fractions.Fraction straight from their decimal strings, following SPEC section 3:
ceil(usd_cost x usd_inr x (1 + markup) x 10^6), or ceil(inr_cost x (1 + markup) x 10^6).
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.catalog import spec_from_entry
from aicredits.domain.pricing import Rates, TokenUsage, inr_rate_view, token_prices

SETTINGS = settings(max_examples=200, deadline=None)
BUCKETS = ("uncached", "cache_read", "cache_write", "cache_write_1h", "completion")
PRICE_KEYS = {
    "uncached": "input_cost_per_1m",
    "completion": "output_cost_per_1m",
    "cache_read": "cache_read_cost_per_1m",
    "cache_write": "cache_write_cost_per_1m",
    "cache_write_1h": "cache_write_1h_cost_per_1m",
}


def dec(places: int, max_units: int):
    """A non-negative decimal string with up to `places` decimals."""
    return st.integers(min_value=0, max_value=max_units).map(
        lambda k: f"{k // 10**places}.{k % 10**places:0{places}d}")


prices_st = st.fixed_dictionaries(
    {"uncached": dec(4, 200 * 10**4), "completion": dec(4, 200 * 10**4)},
    optional={"cache_read": dec(4, 200 * 10**4), "cache_write": dec(4, 200 * 10**4),
              "cache_write_1h": dec(4, 200 * 10**4)},
)
rate_st = st.integers(min_value=1, max_value=200 * 10**4).map(lambda k: f"{k // 10**4}.{k % 10**4:04d}")
markup_st = dec(4, 2 * 10**4)
tokens_st = st.integers(min_value=0, max_value=10**7)
buckets_st = st.fixed_dictionaries({b: tokens_st for b in BUCKETS})
currency_st = st.sampled_from(["USD", "INR"])


def make_spec(prices: dict[str, str], currency: str, as_float: bool = False):
    entry = {"id": "test/model", "currency": currency, "context_window": 100_000, "max_output_tokens": 4096}
    for bucket, price in prices.items():
        entry[PRICE_KEYS[bucket]] = float(price) if as_float else price
    return spec_from_entry(entry)


def usage_of(b: dict[str, int]) -> TokenUsage:
    return TokenUsage(
        prompt_tokens=b["uncached"] + b["cache_read"] + b["cache_write"] + b["cache_write_1h"],
        completion_tokens=b["completion"],
        cache_read_tokens=b["cache_read"],
        cache_write_tokens=b["cache_write"],
        cache_write_1h_tokens=b["cache_write_1h"],
    )


def expected_exact_micros(prices: dict[str, str], b: dict[str, int], rate: str, markup: str,
                          currency: str) -> Fraction:
    """Independent reference: per-1M prices in `currency`, summed exactly, converted once."""
    def price(bucket: str) -> Fraction:
        # a missing cache price bills those tokens at the input price
        return Fraction(prices.get(bucket, prices["uncached"]))
    cost = sum((b[k] * price(k) for k in BUCKETS), Fraction(0)) / 10**6
    inr = cost * Fraction(rate) if currency == "USD" else cost
    return inr * (1 + Fraction(markup)) * 10**6


def charge(prices, b, rate, markup, currency, as_float=False) -> int:
    spec = make_spec(prices, currency, as_float)
    return token_prices(spec, Rates(Fraction(rate), Fraction(markup))).cost(usage_of(b))


# ------------------------------------------------------------------ exactness
@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st)
def test_charge_is_the_ceiling_of_the_exact_rational(prices, b, rate, markup, currency):
    exact = expected_exact_micros(prices, b, rate, markup, currency)
    result = charge(prices, b, rate, markup, currency)
    assert isinstance(result, int)
    assert result == math.ceil(exact)


@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st)
def test_exact_cost_is_not_rounded_before_the_end(prices, b, rate, markup, currency):
    spec = make_spec(prices, currency)
    tp = token_prices(spec, Rates(Fraction(rate), Fraction(markup)))
    assert tp.exact_cost(usage_of(b)) == expected_exact_micros(prices, b, rate, markup, currency)


@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st)
def test_float_catalog_numbers_price_like_their_decimal_strings(prices, b, rate, markup, currency):
    # TOML hands the catalog floats; 0.15 must mean 3/20, not the nearest binary double.
    assert charge(prices, b, rate, markup, currency, as_float=True) == \
        charge(prices, b, rate, markup, currency)


def test_rounding_happens_once_per_call_not_per_bucket():
    # 1 input + 1 output token of a 0.15/0.60 USD model at rate 1, no markup:
    # 0.15 + 0.60 = 0.75 micro-INR -> 1 micro, where per-bucket rounding would give 2.
    prices = {"uncached": "0.15", "completion": "0.60"}
    b = dict.fromkeys(BUCKETS, 0) | {"uncached": 1, "completion": 1}
    assert charge(prices, b, "1", "0", "USD") == 1
    # and many sub-micro tokens add up before the ceiling, not after each one
    b = dict.fromkeys(BUCKETS, 0) | {"uncached": 3, "cache_read": 3, "completion": 3}
    prices = {"uncached": "0.1", "cache_read": "0.1", "completion": "0.1"}
    assert charge(prices, b, "1", "0", "USD") == 1     # 0.9 micro-INR in all


@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st)
def test_one_rounding_never_exceeds_per_bucket_rounding(prices, b, rate, markup, currency):
    spec = make_spec(prices, currency)
    tp = token_prices(spec, Rates(Fraction(rate), Fraction(markup)))
    per_bucket = sum(math.ceil(tp.exact_cost(usage_of(dict.fromkeys(BUCKETS, 0) | {k: b[k]})))
                     for k in BUCKETS)
    once = tp.cost(usage_of(b))
    assert once <= per_bucket
    assert once - 1 < tp.exact_cost(usage_of(b)) <= once


def test_known_charge_for_gpt_4o_mini():
    # 1M input tokens at 0.15 USD/1M, 83.5 INR/USD, 15% markup = 14.40375 INR
    prices = {"uncached": "0.15", "completion": "0.60", "cache_read": "0.075"}
    b = dict.fromkeys(BUCKETS, 0) | {"uncached": 1_000_000}
    assert charge(prices, b, "83.5", "0.15", "USD") == 14_403_750
    b = dict.fromkeys(BUCKETS, 0) | {"cache_read": 1_000_000}
    assert charge(prices, b, "83.5", "0.15", "USD") == 7_201_875


# ------------------------------------------------------------------ monotonicity
@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st, st.sampled_from(BUCKETS),
       st.integers(min_value=1, max_value=10**6))
def test_cost_is_monotonic_in_every_token_count(prices, b, rate, markup, currency, bucket, more):
    bigger = dict(b) | {bucket: b[bucket] + more}
    assert charge(prices, bigger, rate, markup, currency) >= charge(prices, b, rate, markup, currency)


@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, markup_st, currency_st)
def test_cost_is_monotonic_in_markup(prices, b, rate, m1, m2, currency):
    lo, hi = sorted([m1, m2], key=Fraction)
    assert charge(prices, b, rate, lo, currency) <= charge(prices, b, rate, hi, currency)


# ------------------------------------------------------------------ currency and markup
@SETTINGS
@given(prices_st, buckets_st, rate_st, rate_st, markup_st)
def test_inr_priced_entries_ignore_the_usd_rate(prices, b, rate1, rate2, markup):
    assert charge(prices, b, rate1, markup, "INR") == charge(prices, b, rate2, markup, "INR")


@SETTINGS
@given(prices_st, buckets_st, markup_st)
def test_inr_priced_entry_costs_its_inr_price_times_one_plus_markup(prices, b, markup):
    base = sum((b[k] * Fraction(prices.get(k, prices["uncached"])) for k in BUCKETS), Fraction(0))
    assert charge(prices, b, "83.5", markup, "INR") == math.ceil(base * (1 + Fraction(markup)))


@SETTINGS
@given(prices_st, buckets_st, rate_st, markup_st, currency_st)
def test_markup_is_applied_as_one_plus_m(prices, b, rate, markup, currency):
    spec = make_spec(prices, currency)
    plain = token_prices(spec, Rates(Fraction(rate), Fraction(0))).exact_cost(usage_of(b))
    marked = token_prices(spec, Rates(Fraction(rate), Fraction(markup)))
    assert marked.exact_cost(usage_of(b)) == plain * (1 + Fraction(markup))
    assert marked.cost(usage_of(b)) == math.ceil(plain * (1 + Fraction(markup)))


def test_rates_factor():
    rates = Rates(Fraction("83.5"), Fraction("0.15"))
    assert rates.factor("USD") == Fraction("83.5") * Fraction("1.15")
    assert rates.factor("INR") == Fraction("1.15")


# ------------------------------------------------------------------ buckets
def test_missing_cache_prices_bill_at_the_input_price():
    spec = make_spec({"uncached": "3", "completion": "15"}, "USD")
    tp = token_prices(spec, Rates(Fraction(1), Fraction(0)))
    assert tp.cache_read == tp.cache_write == tp.cache_write_1h == tp.input == 3
    assert tp.max_input == 3


def test_each_anthropic_bucket_has_its_own_price():
    prices = {"uncached": "3.00", "completion": "15.00", "cache_read": "0.30",
              "cache_write": "3.75", "cache_write_1h": "6.00"}
    spec = make_spec(prices, "USD")
    tp = token_prices(spec, Rates(Fraction(1), Fraction(0)))
    assert (tp.input, tp.output, tp.cache_read, tp.cache_write, tp.cache_write_1h) == \
        (3, 15, Fraction(3, 10), Fraction(15, 4), 6)
    assert tp.max_input == 6
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=10, cache_read_tokens=100,
                       cache_write_tokens=200, cache_write_1h_tokens=300)
    assert usage.uncached_prompt_tokens == 400
    assert tp.exact_cost(usage) == 400 * 3 + 100 * Fraction(3, 10) + 200 * Fraction(15, 4) + 300 * 6 + 10 * 15


@SETTINGS
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_uncached_prompt_tokens_never_negative(prompt, read, write, write_1h):
    usage = TokenUsage(prompt_tokens=prompt, cache_read_tokens=read, cache_write_tokens=write,
                       cache_write_1h_tokens=write_1h)
    assert usage.uncached_prompt_tokens == max(0, prompt - read - write - write_1h)


def test_reasoning_tokens_are_billed_inside_completion_tokens_only():
    spec = make_spec({"uncached": "1", "completion": "2"}, "USD")
    tp = token_prices(spec, Rates(Fraction(1), Fraction(0)))
    with_reasoning = TokenUsage(prompt_tokens=0, completion_tokens=10, reasoning_tokens=7)
    without = TokenUsage(prompt_tokens=0, completion_tokens=10)
    assert tp.cost(with_reasoning) == tp.cost(without) == 20


def test_inr_rate_view():
    rates = Rates(Fraction("83.5"), Fraction("0.15"))
    usd = make_spec({"uncached": "0.15", "completion": "0.6"}, "USD")
    inr = make_spec({"uncached": "1500", "completion": "1500"}, "INR")
    assert inr_rate_view(usd.input, usd, rates) == Fraction("14.40375")
    assert inr_rate_view(inr.input, inr, rates) == Fraction(1725)
    assert inr_rate_view(None, usd, rates) is None
