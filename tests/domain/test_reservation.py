"""Holds: the worst-case reservation before a call, and the 402 that says what would fit."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aicredits.domain.catalog import spec_from_entry
from aicredits.domain.media import InputCosts, PixelImages
from aicredits.domain.money import MICROS_PER_INR
from aicredits.domain.pricing import Rates, TokenUsage, max_prices, token_prices
from aicredits.domain.reservation import (
    DEFAULT_MAX_OUTPUT,
    UNKNOWN_WINDOW,
    HoldPlan,
    Refusal,
    hold_prices,
    plan_fixed_hold,
    plan_hold,
    prompt_token_bound,
)
from aicredits.domain.usage import estimate_prompt_tokens

SETTINGS = settings(max_examples=200, deadline=None)

money_st = st.integers(min_value=0, max_value=10**10)
key_st = st.none() | st.integers(min_value=0, max_value=10**10)
over_limit_st = st.integers(min_value=-10**9, max_value=-1)   # a key spent past a lowered limit
prompt_cost_st = st.builds(Fraction, st.integers(0, 10**9), st.integers(1, 10**6))
output_price_st = st.builds(Fraction, st.integers(0, 10**5), st.integers(1, 10**3))
tokens_st = st.none() | st.integers(min_value=1, max_value=200_000)
n_st = st.integers(min_value=1, max_value=4)


def hold_for(prompt_cost: Fraction, output_price: Fraction, n: int, tokens: int) -> int:
    """Independent reference: the worst case of prompt plus `tokens` per choice."""
    return math.ceil(prompt_cost + output_price * n * tokens)


def headroom_of(available: int, key_headroom: int | None) -> int:
    return available if key_headroom is None else min(available, key_headroom)


def inr_in(message: str, pattern: str) -> int:
    m = re.search(pattern, message)
    assert m, (pattern, message)
    return int(Decimal(m.group(1)) * MICROS_PER_INR)


# ------------------------------------------------------------------ plan_hold properties
@SETTINGS
@given(money_st, key_st, prompt_cost_st, output_price_st, tokens_st, tokens_st, n_st)
def test_a_hold_never_exceeds_the_headroom_and_covers_the_worst_case(
        available, key_headroom, prompt_cost, output_price, requested, cap, n):
    headroom = headroom_of(available, key_headroom)
    try:
        plan = plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                         output_price=output_price, requested_max=requested, model_cap=cap, n=n)
    except Refusal:
        # refused only when even one output token does not fit (or the asked max_tokens)
        asked = requested if requested is not None else 1
        assert hold_for(prompt_cost, output_price, n, asked) > headroom
        return
    assert plan.amount <= headroom
    assert plan.max_tokens >= 1
    assert plan.amount == hold_for(prompt_cost, output_price, n, plan.max_tokens)
    assert plan.amount >= prompt_cost + output_price * n * plan.max_tokens


@SETTINGS
@given(money_st, key_st, prompt_cost_st, output_price_st, st.integers(1, 200_000), tokens_st, n_st)
def test_a_given_max_tokens_is_held_exactly_or_refused(
        available, key_headroom, prompt_cost, output_price, requested, cap, n):
    headroom = headroom_of(available, key_headroom)
    # a value above the model's cap is held, and sent upstream, as the cap (docs/billing.md)
    capped = bool(cap) and requested > cap
    held = cap if capped else requested
    need = hold_for(prompt_cost, output_price, n, held)
    if need <= headroom:
        plan = plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                         output_price=output_price, requested_max=requested, model_cap=cap, n=n)
        assert (plan.amount, plan.max_tokens, plan.inject_max_tokens) == (need, held, capped)
    else:
        with pytest.raises(Refusal) as refused:
            plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                      output_price=output_price, requested_max=requested, model_cap=cap, n=n)
        m = re.search(r"max_tokens <= (\d+) would fit", refused.value.message)
        if m:   # what the 402 says fits does fit, and one more does not
            fit = int(m.group(1))
            assert fit <= (cap or fit) and hold_for(prompt_cost, output_price, n, fit) <= headroom
            assert hold_for(prompt_cost, output_price, n, fit + 1) > headroom or fit == cap


@SETTINGS
@given(money_st, key_st, prompt_cost_st, output_price_st, tokens_st, n_st)
def test_without_max_tokens_the_largest_affordable_value_up_to_the_cap_is_injected(
        available, key_headroom, prompt_cost, output_price, cap, n):
    headroom = headroom_of(available, key_headroom)
    limit = cap or DEFAULT_MAX_OUTPUT
    if hold_for(prompt_cost, output_price, n, 1) > headroom:
        with pytest.raises(Refusal):
            plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                      output_price=output_price, requested_max=None, model_cap=cap, n=n)
        return
    plan = plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                     output_price=output_price, requested_max=None, model_cap=cap, n=n)
    assert 1 <= plan.max_tokens <= limit
    assert plan.max_tokens == limit or hold_for(prompt_cost, output_price, n, plan.max_tokens + 1) > headroom
    # docs/billing.md ("When the gateway sends max_tokens itself"): when the client gives no max_tokens the gateway *sends* the value it held
    # for, so the upstream can never produce more output than the hold covers.
    assert plan.inject_max_tokens is True


def test_max_tokens_is_injected_even_when_the_whole_model_cap_is_affordable():
    plan = plan_hold(available=10**12, key_headroom=None, prompt_cost=Fraction(100),
                     output_price=Fraction(1), requested_max=None, model_cap=16384)
    assert plan.max_tokens == 16384
    assert plan.amount == 100 + 16384
    assert plan.inject_max_tokens is True


def test_cap_without_a_model_cap_is_the_default():
    plan = plan_hold(available=10**12, key_headroom=None, prompt_cost=Fraction(0),
                     output_price=Fraction(1), requested_max=None, model_cap=None)
    assert plan.max_tokens == DEFAULT_MAX_OUTPUT
    assert plan.inject_max_tokens is True


def test_injected_max_tokens_shrinks_to_what_the_wallet_affords():
    # prompt 1000 micros, 3 micros per output token, 1000 + 3 * 333 = 1999 <= 2000 < 2002
    plan = plan_hold(available=2000, key_headroom=None, prompt_cost=Fraction(1000),
                     output_price=Fraction(3), requested_max=None, model_cap=16384)
    assert (plan.max_tokens, plan.amount, plan.inject_max_tokens) == (333, 1999, True)


def test_n_choices_multiply_the_output_hold():
    plan = plan_hold(available=10**9, key_headroom=None, prompt_cost=Fraction(10),
                     output_price=Fraction(2), requested_max=100, model_cap=None, n=3)
    assert plan.amount == 10 + 2 * 3 * 100
    assert plan.max_tokens == 100


def test_free_output_holds_only_the_prompt():
    plan = plan_hold(available=50, key_headroom=None, prompt_cost=Fraction(50),
                     output_price=Fraction(0), requested_max=None, model_cap=8192)
    assert plan.amount == 50 and plan.max_tokens == 8192
    with pytest.raises(Refusal):
        plan_hold(available=49, key_headroom=None, prompt_cost=Fraction(50),
                  output_price=Fraction(0), requested_max=None, model_cap=8192)


# ------------------------------------------------------------------ refusal messages
@st.composite
def short_of(draw, need: int):
    """(available, key_headroom) whose headroom is below `need`, either side binding."""
    short = draw(st.integers(0, max(need - 1, 0)))
    if draw(st.booleans()):
        return short, draw(st.none() | st.integers(short, 10**10))     # the wallet binds
    return draw(st.integers(short + 1, 10**10)), short                  # the key binds


@SETTINGS
@given(prompt_cost_st, output_price_st.filter(lambda p: p > 0), st.integers(1, 200_000), tokens_st,
       n_st, st.data())
def test_refusal_names_a_max_tokens_that_fits_exactly(
        prompt_cost, output_price, requested, cap, n, data):
    held = min(requested, cap) if cap else requested   # above the model's cap: held as the cap
    need = hold_for(prompt_cost, output_price, n, held)
    assume(need >= 1)
    available, key_headroom = data.draw(short_of(need))
    headroom = headroom_of(available, key_headroom)
    assert need > headroom
    with pytest.raises(Refusal) as info:
        plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                  output_price=output_price, requested_max=requested, model_cap=cap, n=n)
    message = info.value.message
    assert str(info.value) == message
    assert message.startswith("Insufficient credits")
    one_fits = hold_for(prompt_cost, output_price, n, 1) <= headroom
    m = re.search(r"max_tokens <= (\d+)", message)
    assert (m is not None) == one_fits, message
    if m:
        fit = int(m.group(1))
        assert 1 <= fit < held
        # the largest that fits, below what the model can produce (the cap itself did not fit)
        assert hold_for(prompt_cost, output_price, n, fit) <= headroom
        assert headroom < hold_for(prompt_cost, output_price, n, fit + 1)
        # and the gateway agrees: asking for exactly that many is accepted, one more is not, and
        # neither is any larger value (issue 13: a 402 saying "<= 4096 would fit" was followed
        # by a 16,000 success, held as the requested 16,000 while the message capped it)
        plan = plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                         output_price=output_price, requested_max=fit, model_cap=cap, n=n)
        assert plan.max_tokens == fit
        for more in (fit + 1, requested, requested * 4):
            with pytest.raises(Refusal):
                plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                          output_price=output_price, requested_max=more, model_cap=cap, n=n)
        shown = rf"max_tokens={requested}(?: \(the model writes at most {cap}\))? needs up to (-?\d+\.\d{{6}}) INR"
        assert inr_in(message, shown) == hold_for(prompt_cost, output_price, n, held)
    assert inr_in(message, r"has (-?\d+\.\d{6}) INR available") == max(headroom, 0)


@SETTINGS
@given(money_st, key_st, prompt_cost_st, output_price_st, tokens_st, tokens_st, n_st)
def test_refusal_names_the_key_limit_exactly_when_it_binds(
        available, key_headroom, prompt_cost, output_price, requested, cap, n):
    try:
        plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                  output_price=output_price, requested_max=requested, model_cap=cap, n=n)
    except Refusal as refusal:
        key_binds = key_headroom is not None and key_headroom < available
        assert refusal.key_limited is key_binds
        assert ("key's credit limit" in refusal.message) is key_binds
        assert ("the wallet" in refusal.message) is (not key_binds)


@SETTINGS
@given(prompt_cost_st, output_price_st, n_st, st.data())
def test_too_poor_refusal_names_the_amount_that_would_fit(prompt_cost, output_price, n, data):
    need = hold_for(prompt_cost, output_price, n, 1)
    assume(need >= 1)
    available, key_headroom = data.draw(short_of(need))
    headroom = headroom_of(available, key_headroom)
    assert need > headroom
    with pytest.raises(Refusal) as info:
        plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                  output_price=output_price, requested_max=None, model_cap=None, n=n)
    message = info.value.message
    assert "max_tokens <=" not in message
    assert inr_in(message, r"needs at least (\d+\.\d{6}) INR") == need
    add = inr_in(message, r"Add at least (\d+\.\d{6}) INR")
    assert add >= 1
    # the named amount is what the binding limit lacks: with it a minimal answer fits
    assert headroom + add >= need
    if key_headroom is None:
        plan_hold(available=available + add, key_headroom=None, prompt_cost=prompt_cost,
                  output_price=output_price, requested_max=1, model_cap=None, n=n)
        with pytest.raises(Refusal):
            plan_hold(available=available + add - 1, key_headroom=None, prompt_cost=prompt_cost,
                      output_price=output_price, requested_max=1, model_cap=None, n=n)


@SETTINGS
@given(st.integers(0, 10**10), over_limit_st, prompt_cost_st, output_price_st, tokens_st, tokens_st, n_st)
def test_a_key_over_its_limit_is_always_refused_naming_the_key_limit(
        available, key_headroom, prompt_cost, output_price, requested, cap, n):
    # docs/billing.md ("The 402 messages"): a key over its limit gets 402 too, the message naming the key limit
    # -- even for a call whose price is zero.
    with pytest.raises(Refusal) as info:
        plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                  output_price=output_price, requested_max=requested, model_cap=cap, n=n)
    assert info.value.key_limited is True
    assert "key's credit limit" in info.value.message


def test_a_key_over_its_limit_is_refused_a_free_call():
    with pytest.raises(Refusal) as info:
        plan_hold(available=10**9, key_headroom=-5_000_000, prompt_cost=Fraction(0),
                  output_price=Fraction(0), requested_max=None, model_cap=4096)
    assert info.value.key_limited is True
    with pytest.raises(Refusal):
        plan_fixed_hold(available=10**9, key_headroom=-5_000_000, cost=0)


def test_a_key_over_its_limit_is_told_how_far_over_it_is():
    # 5 INR over the limit; one output token costs 1 micro: raising the limit by the named
    # amount must make a minimal call fit, so the amount is at least 5.000001 INR.
    with pytest.raises(Refusal) as info:
        plan_hold(available=10**9, key_headroom=-5_000_000, prompt_cost=Fraction(0),
                  output_price=Fraction(1), requested_max=None, model_cap=4096)
    message = info.value.message
    assert "raise the key's limit" in message
    assert inr_in(message, r"Add at least (\d+\.\d{6}) INR") >= 5_000_001


def test_refusal_example_message():
    with pytest.raises(Refusal) as info:
        plan_hold(available=2_000, key_headroom=None, prompt_cost=Fraction(1000),
                  output_price=Fraction(3), requested_max=1000, model_cap=16384)
    assert info.value.message == (
        "Insufficient credits: max_tokens=1000 needs up to 0.004000 INR but the wallet has "
        "0.002000 INR available; max_tokens <= 333 would fit.")
    assert info.value.key_limited is False


# ------------------------------------------------------------------ plan_fixed_hold
@SETTINGS
@given(money_st, key_st, st.integers(0, 10**10))
def test_fixed_hold_is_the_cost_when_it_fits(available, key_headroom, cost):
    headroom = headroom_of(available, key_headroom)
    if cost <= headroom:
        assert plan_fixed_hold(available=available, key_headroom=key_headroom, cost=cost) == cost
    else:
        with pytest.raises(Refusal) as info:
            plan_fixed_hold(available=available, key_headroom=key_headroom, cost=cost)
        key_binds = key_headroom is not None and key_headroom < available
        assert info.value.key_limited is key_binds
        assert ("key's credit limit" in info.value.message) is key_binds


# ------------------------------------------------------------------ prompt_token_bound
text_st = st.text(max_size=60)
part_st = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, text_st),
    st.builds(lambda u: {"type": "image_url", "image_url": {"url": "data:image/png;base64," + u}},
              st.text(alphabet="ABCDEFGHIJ0123456789+/", max_size=200)),
    st.builds(lambda u: {"type": "input_image", "image_url": u}, st.text(max_size=40)),
)
message_st = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
     "content": st.one_of(st.none(), text_st, st.lists(part_st, max_size=4))},
    optional={"name": text_st},
)
messages_st = st.lists(message_st, max_size=6)


def _text_bytes(value) -> int:
    """UTF-8 bytes of every string, keys included, image payloads excluded."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items() if k != "image_url")
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    return 0


def _images(messages) -> int:
    return sum(1 for m in messages if isinstance(m["content"], list)
               for p in m["content"] if p["type"] in ("image_url", "input_image"))


def _content_bytes(messages) -> int:
    total = 0
    for m in messages:
        c = m["content"]
        if isinstance(c, str):
            total += len(c.encode())
        elif isinstance(c, list):
            total += sum(len(p["text"].encode()) for p in c if p["type"] == "text")
    return total


@SETTINGS
@given(messages_st)
def test_prompt_bound_covers_every_utf8_byte_of_the_text(messages):
    body = {"model": "m", "messages": messages}
    bound = prompt_token_bound(body, None)
    # a BPE token is at least one byte, so the bytes bound any tokenizer's count
    assert bound >= _content_bytes(messages)
    assert bound >= _text_bytes(messages)
    assert bound >= estimate_prompt_tokens(body)     # the fallback estimate stays under the hold
    if _images(messages):
        # no formula given: an image could be anything, so the bound assumes a whole window
        assert bound >= UNKNOWN_WINDOW
    costs = InputCosts(image=PixelImages())
    assert prompt_token_bound(body, None, costs) >= _text_bytes(messages) + _images(messages)


@SETTINGS
@given(messages_st, st.integers(min_value=1, max_value=10_000))
def test_prompt_bound_is_capped_by_the_context_window(messages, context_window):
    body = {"messages": messages}
    bound = prompt_token_bound(body, context_window)
    assert bound <= context_window
    assert bound >= min(_content_bytes(messages), context_window)
    assert bound <= prompt_token_bound(body, None)
    if _images(messages):
        assert bound == context_window     # an image no formula bounds: the whole window


@SETTINGS
@given(messages_st, message_st)
def test_prompt_bound_grows_with_the_conversation(messages, extra):
    assert prompt_token_bound({"messages": messages + [extra]}, None) >= \
        prompt_token_bound({"messages": messages}, None)


def test_prompt_bound_counts_tools_and_response_format():
    messages = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "lookup", "description": "x" * 5000,
                                               "parameters": {"type": "object"}}}]
    base = prompt_token_bound({"messages": messages}, None)
    assert prompt_token_bound({"messages": messages, "tools": tools}, None) >= base + 5000
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "y" * 3000}}}
    assert prompt_token_bound({"messages": messages, "response_format": schema}, None) >= base + 3000


def test_prompt_bound_counts_non_ascii_keys_in_bytes():
    # Tool schemas reach the model as text, property names included. A 4-byte character is
    # one code point but may be several tokens, so keys must count in bytes like values do.
    props = {"\U00020000" * 50 + str(i): {"type": "string"} for i in range(20)}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                         "properties": props}}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    assert prompt_token_bound(body, None) >= _text_bytes(tools) + _text_bytes(body["messages"])


def test_prompt_bound_counts_lone_surrogates():
    body = {"messages": [{"role": "user", "content": "\ud800" * 100}]}
    assert prompt_token_bound(body, None) >= 300


def test_prompt_bound_ignores_image_url_length_but_bounds_each_image():
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1_000_000}}
    body = {"messages": [{"role": "user", "content": [img, img]}]}
    costs = InputCosts(image=PixelImages(750, 1600))
    bound = prompt_token_bound(body, 128_000, costs)
    assert 2 * 1600 <= bound < 2 * 1600 + 1000       # unreadable images: each the formula's largest
    assert prompt_token_bound(body, 128_000) == 128_000   # no formula: the window


def test_prompt_bound_of_an_empty_body():
    assert prompt_token_bound({}, None) >= 0
    assert prompt_token_bound({"messages": None}, 100) >= 0


# ------------------------------------------------------------------ prompt-size tiers
GEMINI_PRO = {"id": "google/gemini-2.5-pro", "input_cost_per_1m": "1.25", "output_cost_per_1m": "10",
              "cache_read_cost_per_1m": "0.125", "context_window": 1048576, "max_output_tokens": 65536,
              "tiers": [{"above_prompt_tokens": 200000, "input_cost_per_1m": "2.50",
                         "output_cost_per_1m": "15", "cache_read_cost_per_1m": "0.25"}]}
RATES = Rates(Fraction("83.5"), Fraction("0.15"))
PER_1M = Fraction("83.5") * Fraction("1.15")      # micro-INR per token for a price of 1 USD per 1M


def gemini_prices():
    return token_prices(spec_from_entry(GEMINI_PRO), RATES)


def text_body(n_bytes: int) -> dict:
    return {"model": "google/gemini-2.5-pro", "messages": [{"role": "user", "content": "x" * n_bytes}]}


def gemini_hold(body: dict, requested: int) -> tuple[int, HoldPlan]:
    bound = prompt_token_bound(body, GEMINI_PRO["context_window"])
    held = hold_prices(gemini_prices(), bound)
    return bound, plan_hold(available=10**12, key_headroom=None, prompt_cost=bound * held.max_input,
                            output_price=held.output, requested_max=requested, model_cap=65536)


def test_a_prompt_bound_at_the_threshold_holds_the_base_tier_one_more_the_next():
    prices = gemini_prices()
    assert hold_prices(prices, 200_000) == prices.at(0)
    assert hold_prices(prices, 200_001) == prices.at(200_001)
    assert hold_prices(prices, 200_001).input == Fraction("2.50") * PER_1M
    assert hold_prices(prices, 200_001).output == 15 * PER_1M
    # through a request body: 55 bytes of overhead (keys, absent fields, per message, per request)
    bound, plan = gemini_hold(text_body(199_945), 1000)
    assert bound == 200_000
    assert plan.amount == math.ceil(200_000 * Fraction("1.25") * PER_1M + 1000 * 10 * PER_1M)
    bound, plan = gemini_hold(text_body(199_946), 1000)
    assert bound == 200_001
    assert plan.amount == math.ceil(200_001 * Fraction("2.50") * PER_1M + 1000 * 15 * PER_1M)


def test_a_prompt_estimated_under_the_threshold_but_reported_over_it_is_charged_exactly_within_the_hold():
    body = text_body(799_964)
    estimate = estimate_prompt_tokens(body)
    assert estimate == 199_999
    assert estimate < 200_000                             # the estimator says: base tier
    bound, plan = gemini_hold(body, 1000)
    assert bound == 800_019
    assert bound > 200_000                                # the byte bound says: the tier is reachable
    # Gemini reports 200001 prompt tokens, 120000 of them cached, and 1000 output tokens
    usage = TokenUsage(prompt_tokens=200_001, cache_read_tokens=120_000, completion_tokens=1000)
    usd = (80_001 * Fraction("2.50") + 120_000 * Fraction("0.25") + 1000 * Fraction("15")) / 10**6
    want = math.ceil(usd * Fraction("83.5") * (1 + Fraction("0.15")) * 10**6)
    assert want == 23_526_366      # 245,002.5 micro-USD x 96.025 = 23,526,365.0625
    charge = gemini_prices().cost(usage)
    assert charge == want
    assert charge <= plan.amount
    # had none of it been cached, a hold at the tier the estimate suggests would have been too
    # small: settle caps the charge at the hold, so the gateway would have lost the difference
    uncached = gemini_prices().cost(TokenUsage(prompt_tokens=200_001, completion_tokens=1000))
    assert uncached == math.ceil((200_001 * Fraction("2.50") + 1000 * 15) * PER_1M) <= plan.amount
    base = gemini_prices().at(0)
    assert math.ceil(estimate * base.max_input + 1000 * base.output) < uncached
    # without usage the estimator bills the prompt at its own (base) tier, within the hold too
    estimated = gemini_prices().cost(TokenUsage(prompt_tokens=estimate, completion_tokens=1000))
    assert estimated == math.ceil((estimate * Fraction("1.25") + 1000 * 10) * PER_1M) <= plan.amount


def test_a_prompt_bound_under_the_threshold_covers_every_count_it_bounds():
    body = text_body(150_000)
    bound, plan = gemini_hold(body, 4000)
    assert bound < 200_000
    prices = gemini_prices()
    for prompt, cached in [(bound, 0), (bound, bound), (1, 0), (estimate_prompt_tokens(body), 0)]:
        usage = TokenUsage(prompt_tokens=prompt, cache_read_tokens=cached, completion_tokens=4000)
        assert prices.cost(usage) <= plan.amount


bucket_split_st = st.tuples(*(st.integers(0, 10**6) for _ in range(4)))
tier_st = st.fixed_dictionaries({}, optional={
    k: st.integers(0, 50 * 10**4).map(lambda v: f"{v // 10**4}.{v % 10**4:04d}")
    for k in ("input_cost_per_1m", "output_cost_per_1m", "cache_read_cost_per_1m",
              "cache_write_cost_per_1m", "cache_write_1h_cost_per_1m")})
model_st = st.tuples(tier_st, st.lists(st.integers(1, 2 * 10**6), max_size=3, unique=True).map(sorted),
                     st.lists(tier_st.filter(bool), min_size=3, max_size=3))


def model_prices(i: int, model) -> object:
    base, thresholds, tiers = model
    entry = {"id": f"x/m{i}", "input_cost_per_1m": "1", "output_cost_per_1m": "2", **base,
             "tiers": [{"above_prompt_tokens": t, **p} for t, p in zip(thresholds, tiers)]}
    return token_prices(spec_from_entry(entry), RATES)


@SETTINGS
@given(st.lists(model_st, min_size=1, max_size=3), st.integers(0, 3 * 10**6), bucket_split_st,
       st.none() | st.integers(1, 100_000), n_st, st.data())
def test_a_hold_covers_every_settle_of_every_model_in_the_chain(chain, bound, split, requested, n, data):
    """hold >= the charge of any model of the chain for any usage the hold's bounds cover:
    total prompt <= the prompt bound, completion <= max_tokens x n."""
    members = [model_prices(i, m) for i, m in enumerate(chain)]
    held = hold_prices(max_prices(members) if len(members) > 1 else members[0], bound)
    plan = plan_hold(available=10**15, key_headroom=None, prompt_cost=bound * held.max_input,
                     output_price=held.output, requested_max=requested, model_cap=65536, n=n)
    # a prompt of at most `bound` tokens, split at random into the four prompt buckets
    weights = [w + 1 for w in split]
    prompt = data.draw(st.integers(0, bound))
    parts = [prompt * w // sum(weights) for w in weights[1:]]
    usage = TokenUsage(prompt_tokens=prompt, cache_read_tokens=parts[0], cache_write_tokens=parts[1],
                       cache_write_1h_tokens=parts[2],
                       completion_tokens=data.draw(st.integers(0, plan.max_tokens * n)))
    assert usage.total_prompt_tokens == prompt
    for member in members:
        assert member.cost(usage) <= plan.amount


def fraction_plan_hold(*, available: int, key_headroom: int | None, prompt_cost: Fraction,
                       output_price: Fraction, requested_max: int | None, model_cap: int | None,
                       n: int = 1) -> tuple[int, int, bool] | str:
    """plan_hold as it was written in Fractions (the reference its integers must equal): the
    plan, or the refusal's message."""
    from aicredits.domain.money import ceil_fraction, format_inr
    key_limited = key_headroom is not None and key_headroom < available
    headroom = min(available, key_headroom) if key_headroom is not None else available
    who = "the key's credit limit" if key_limited else "the wallet"
    per_token = output_price * max(1, n)
    room = Fraction(headroom) - prompt_cost
    fit = int(room // per_token) if per_token > 0 else (10**12 if room >= 0 else -1)

    def too_poor() -> str:
        need = ceil_fraction(prompt_cost + per_token)
        return (f"Insufficient credits: this request needs at least {format_inr(need)} INR "
                f"(its prompt and one output token) but {who} has {format_inr(max(headroom, 0))} INR available. "
                f"Add at least {format_inr(max(need - headroom, 1))} INR"
                + (" or raise the key's limit." if key_limited else "."))
    if requested_max is not None:
        asked = f"max_tokens={requested_max}"
        capped = model_cap is not None and model_cap > 0 and requested_max > model_cap
        if capped and model_cap is not None:
            requested_max = model_cap
            asked += f" (the model writes at most {model_cap})"
        amount = ceil_fraction(prompt_cost + per_token * requested_max)
        if amount <= headroom:
            return amount, requested_max, capped
        if model_cap:
            fit = min(fit, model_cap)
        if fit >= 1:
            return (f"Insufficient credits: {asked} needs up to {format_inr(amount)} INR but {who} has "
                    f"{format_inr(max(headroom, 0))} INR available; max_tokens <= {fit} would fit.")
        return too_poor()
    cap = model_cap or DEFAULT_MAX_OUTPUT
    if fit < 1:
        return too_poor()
    tokens = min(cap, fit)
    return ceil_fraction(prompt_cost + per_token * tokens), tokens, True


@settings(max_examples=2000, deadline=None)
@given(st.integers(-10**6, 10**12), st.none() | st.integers(-10**6, 10**12),
       st.builds(Fraction, st.integers(0, 10**12), st.integers(1, 10**9)),
       st.builds(Fraction, st.integers(0, 10**9), st.integers(1, 10**9)),
       st.none() | st.integers(1, 10**6), st.none() | st.integers(0, 10**6), st.integers(0, 128))
def test_the_integer_hold_is_the_fraction_hold(available, key_headroom, prompt_cost, output_price,
                                               requested_max, model_cap, n):
    """plan_hold works in integers over the prices' common denominator: the same plan, or the
    same refusal word for word, as the Fraction arithmetic, over prices with any denominators."""
    expected = fraction_plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                                  output_price=output_price, requested_max=requested_max, model_cap=model_cap,
                                  n=n)
    try:
        plan = plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                         output_price=output_price, requested_max=requested_max, model_cap=model_cap, n=n)
    except Refusal as refusal:
        assert refusal.message == expected
    else:
        assert (plan.amount, plan.max_tokens, plan.inject_max_tokens) == expected
