"""Token pricing: a call's cost is an exact rational rounded up once, in micro-INR.

The expected charge is computed independently here: prices, rate and markup are parsed
with fractions.Fraction straight from their decimal strings, following docs/billing.md ("The charge formula"):
ceil(usd_cost x usd_inr x (1 + markup) x 10^6), or ceil(inr_cost x (1 + markup) x 10^6).
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.catalog import spec_from_entry
from aicredits.domain.pricing import Rates, TokenUsage, inr_rate_view, max_prices, token_prices

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


# ------------------------------------------------------------------ prompt-size tiers
GEMINI_PRO = {"id": "google/gemini-2.5-pro", "input_cost_per_1m": "1.25", "output_cost_per_1m": "10",
              "cache_read_cost_per_1m": "0.125", "context_window": 1048576,
              "tiers": [{"above_prompt_tokens": 200000, "input_cost_per_1m": "2.50",
                         "output_cost_per_1m": "15", "cache_read_cost_per_1m": "0.25"}]}
RATES = Rates(Fraction("83.5"), Fraction("0.15"))


def gemini_charge(**usage) -> int:
    return token_prices(spec_from_entry(GEMINI_PRO), RATES).cost(TokenUsage(**usage))


def test_a_prompt_of_exactly_the_threshold_is_the_base_tier_one_more_is_the_next():
    tp = token_prices(spec_from_entry(GEMINI_PRO), Rates(Fraction(1), Fraction(0)))   # micro-USD per token
    # 200000 prompt tokens, 100 output: 200000 x 1.25 + 100 x 10
    assert tp.exact_cost(TokenUsage(prompt_tokens=200_000, completion_tokens=100)) == 250_000 + 1_000
    # 200001: the whole call at the higher tier, input and output alike
    assert tp.exact_cost(TokenUsage(prompt_tokens=200_001, completion_tokens=100)) == \
        200_001 * Fraction(5, 2) + 100 * 15
    assert tp.at(0) == tp.at(200_000) != tp.at(200_001) == tp.at(10**9)
    assert (tp.at(200_001).input, tp.at(200_001).output, tp.at(200_001).cache_read) == \
        (Fraction(5, 2), 15, Fraction(1, 4))


def test_cached_tokens_count_toward_the_threshold():
    tp = token_prices(spec_from_entry(GEMINI_PRO), Rates(Fraction(1), Fraction(0)))
    # 150000 uncached + 50001 cached = 200001 prompt tokens: higher tier, though neither bucket is
    below = TokenUsage(prompt_tokens=200_000, cache_read_tokens=50_000, completion_tokens=10)
    above = TokenUsage(prompt_tokens=200_001, cache_read_tokens=50_001, completion_tokens=10)
    assert tp.exact_cost(below) == 150_000 * Fraction(5, 4) + 50_000 * Fraction(1, 8) + 10 * 10
    assert tp.exact_cost(above) == 150_000 * Fraction(5, 2) + 50_001 * Fraction(1, 4) + 10 * 15
    # cache writes count too (a Gemini entry prices them at the input price)
    writes = TokenUsage(prompt_tokens=200_001, cache_write_tokens=100_000, cache_write_1h_tokens=1)
    assert tp.exact_cost(writes) == 200_001 * Fraction(5, 2)
    # and a usage built without the cache buckets in prompt_tokens still sees the whole prompt
    odd = TokenUsage(prompt_tokens=0, cache_read_tokens=200_001)
    assert odd.total_prompt_tokens == 200_001
    assert tp.exact_cost(odd) == 200_001 * Fraction(1, 4)


def test_known_charge_for_a_long_gemini_2_5_pro_call():
    # 250000 prompt tokens (50000 of them cached) and 2000 output tokens, 83.5 INR/USD, 15 % markup.
    # > 200k, so the whole call at $2.50 / $0.25 / $15 per 1M:
    usd = (200_000 * Fraction("2.50") + 50_000 * Fraction("0.25") + 2_000 * Fraction("15")) / 10**6
    assert usd == Fraction("0.5425")
    micros = usd * Fraction("83.5") * (1 + Fraction("0.15")) * 10**6
    assert micros == Fraction("52093562.5")
    assert gemini_charge(prompt_tokens=250_000, cache_read_tokens=50_000, completion_tokens=2_000) == \
        math.ceil(micros) == 52_093_563
    # the same call at the base tier would have been 26,526,906.25 micro-INR: the tier matters
    base = (200_000 * Fraction("1.25") + 50_000 * Fraction("0.125") + 2_000 * 10) * Fraction("83.5") * \
        Fraction("1.15")
    assert math.ceil(base) == 26_526_907
    assert math.ceil(base) < math.ceil(micros)


def test_a_tier_without_cache_prices_bills_cache_tokens_at_its_own_input_price():
    spec = spec_from_entry({"id": "x/m", "input_cost_per_1m": 1, "output_cost_per_1m": 2,
                            "tiers": [{"above_prompt_tokens": 10, "input_cost_per_1m": 4}]})
    tp = token_prices(spec, Rates(Fraction(1), Fraction(0)))
    assert tp.exact_cost(TokenUsage(prompt_tokens=11, cache_read_tokens=5, cache_write_tokens=6)) == 11 * 4
    assert tp.exact_cost(TokenUsage(prompt_tokens=10, cache_read_tokens=5, cache_write_tokens=5)) == 10


# an entry with 0-3 tiers at random thresholds, each tier setting a random subset of prices
# (cheaper or dearer than the base)
tier_prices_st = st.fixed_dictionaries({}, optional={k: dec(4, 200 * 10**4) for k in PRICE_KEYS})
tiered_st = st.tuples(prices_st, st.lists(st.integers(1, 10**6), max_size=3, unique=True).map(sorted),
                      st.lists(tier_prices_st.filter(bool), min_size=3, max_size=3))


def tiered_spec(prices, thresholds, tier_prices, currency="USD"):
    entry = {"id": "test/tiered", "currency": currency}
    for bucket, price in prices.items():
        entry[PRICE_KEYS[bucket]] = price
    entry["tiers"] = [{"above_prompt_tokens": t, **{PRICE_KEYS[b]: v for b, v in tp.items()}}
                      for t, tp in zip(thresholds, tier_prices)]
    return spec_from_entry(entry)


def expected_tiered(prices, thresholds, tier_prices, b, rate, markup, currency) -> Fraction:
    """Independent reference: the last tier whose threshold the whole prompt exceeds, the
    base value for each price it omits, a missing cache price at that tier's input price."""
    prompt = b["uncached"] + b["cache_read"] + b["cache_write"] + b["cache_write_1h"]
    chosen = dict(prices)
    for t, tp in zip(thresholds, tier_prices):
        if prompt > t:
            chosen = dict(prices) | tp
    return expected_exact_micros(chosen, b, rate, markup, currency)


@SETTINGS
@given(tiered_st, buckets_st, rate_st, markup_st, currency_st)
def test_a_tiered_charge_is_the_ceiling_of_the_exact_rational_at_the_prompts_tier(
        tiered, b, rate, markup, currency):
    prices, thresholds, tier_prices = tiered
    spec = tiered_spec(prices, thresholds, tier_prices, currency)
    tp = token_prices(spec, Rates(Fraction(rate), Fraction(markup)))
    exact = expected_tiered(prices, thresholds, tier_prices, b, rate, markup, currency)
    assert tp.exact_cost(usage_of(b)) == exact
    assert tp.cost(usage_of(b)) == math.ceil(exact)


@SETTINGS
@given(tiered_st, st.integers(0, 2 * 10**6))
def test_at_picks_the_last_tier_the_prompt_exceeds(tiered, prompt):
    prices, thresholds, tier_prices = tiered
    tp = token_prices(tiered_spec(prices, thresholds, tier_prices), Rates(Fraction(1), Fraction(0)))
    passed = [t for t in thresholds if prompt > t]
    want = tp.tiers[len(passed) - 1][1] if passed else replace(tp, tiers=())
    assert tp.at(prompt) == want
    assert tp.at(prompt).tiers == ()


@SETTINGS
@given(st.lists(tiered_st, min_size=1, max_size=3), st.integers(0, 2 * 10**6))
def test_max_prices_of_a_chain_is_the_dearest_at_every_prompt_size(chain, prompt):
    rates = Rates(Fraction(1), Fraction(0))
    members = [token_prices(tiered_spec(*t), rates) for t in chain]
    merged = max_prices(members)
    at = merged.at(prompt)
    for bucket in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
        assert getattr(at, bucket) == max(getattr(m.at(prompt), bucket) for m in members)


@SETTINGS
@given(tiered_st, st.integers(0, 2 * 10**6), st.integers(0, 2 * 10**6))
def test_dearest_up_to_covers_every_prompt_size_up_to_the_bound(tiered, bound, prompt):
    tp = token_prices(tiered_spec(*tiered), Rates(Fraction(1), Fraction(0)))
    held = tp.dearest_up_to(bound)
    assert held.tiers == ()
    if prompt <= bound:
        at = tp.at(prompt)
        for bucket in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
            assert getattr(at, bucket) <= getattr(held, bucket)
        assert at.max_input <= held.max_input


def test_dearest_up_to_reaches_a_tier_only_past_its_threshold():
    tp = token_prices(spec_from_entry(GEMINI_PRO), Rates(Fraction(1), Fraction(0)))
    assert tp.dearest_up_to(200_000) == tp.at(0)
    assert tp.dearest_up_to(200_001) == tp.at(200_001)
    # a cheaper tier never lowers the hold below the base
    cheap = token_prices(spec_from_entry({"id": "x/m", "input_cost_per_1m": 2, "output_cost_per_1m": 2,
                                          "tiers": [{"above_prompt_tokens": 10, "input_cost_per_1m": 1,
                                                     "output_cost_per_1m": 3}]}),
                         Rates(Fraction(1), Fraction(0)))
    assert (cheap.dearest_up_to(11).input, cheap.dearest_up_to(11).output) == (2, 3)


def test_an_untiered_model_prices_as_before():
    tp = token_prices(make_spec({"uncached": "0.15", "completion": "0.60"}, "USD"), RATES)
    assert tp.tiers == ()
    assert tp.at(10**9) is tp and tp.dearest_up_to(10**9) is tp
    assert max_prices([tp]) == tp


def test_cost_in_integers_equals_the_fraction_sum_rounded_up_once():
    """`cost` sums integer numerators over a common denominator: the same micros as the
    Fraction sum of each bucket's tokens x price, ceiled once, at every tier."""
    import random
    from fractions import Fraction as F

    from aicredits.domain.money import ceil_fraction
    from aicredits.domain.pricing import TokenPrices, TokenUsage
    rnd = random.Random(7)

    def fr():
        return F(rnd.randint(0, 10**9), rnd.choice([1, 3, 7, 10**6, 10**9, 12345]))

    def flat():
        return TokenPrices(fr(), fr(), fr(), fr(), fr())
    for _ in range(3000):
        tp = flat()
        if rnd.random() < 0.6:
            a = rnd.randint(0, 3000)
            tp = TokenPrices(tp.input, tp.output, tp.cache_read, tp.cache_write, tp.cache_write_1h,
                             tiers=((a, flat()), (a + rnd.randint(1, 3000), flat())))
        u = TokenUsage(*(rnd.randint(0, 5000) for _ in range(6)))
        p = tp.at(u.total_prompt_tokens)
        want = (u.uncached_prompt_tokens * p.input + u.cache_read_tokens * p.cache_read
                + u.cache_write_tokens * p.cache_write + u.cache_write_1h_tokens * p.cache_write_1h
                + u.completion_tokens * p.output)
        assert tp.exact_cost(u) == want
        assert tp.cost(u) == ceil_fraction(want)
