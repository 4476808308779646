"""Reading usage from OpenAI-shaped responses, and the documented local estimator."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.pricing import TokenUsage
from aicredits.domain.usage import (
    IMAGE_ESTIMATE,
    estimate_input_tokens,
    estimate_prompt_tokens,
    estimate_text_tokens,
    fill_usage,
    prompt_from_openai,
    token_count,
    usage_from_openai,
    usage_row,
)

SETTINGS = settings(max_examples=200, deadline=None)

junk_st = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**9, max_value=10**9),
                    st.floats(allow_nan=True), st.text(max_size=5), st.just([]), st.just({}))
count_st = st.one_of(st.integers(min_value=-10**6, max_value=10**9), junk_st)
details_st = st.one_of(junk_st, st.dictionaries(
    st.sampled_from(["cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
                     "audio_tokens", "accepted_prediction_tokens"]), count_st, max_size=4))
usage_st = st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens",
                     "prompt_tokens_details", "completion_tokens_details"]),
    st.one_of(count_st, details_st), max_size=7)


def fields(u: TokenUsage) -> tuple[int, ...]:
    return (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens, u.cache_write_tokens,
            u.cache_write_1h_tokens, u.reasoning_tokens)


# ------------------------------------------------------------------ usage_from_openai
@pytest.mark.parametrize("value", [None, [], "usage", 7, True])
def test_no_usage_object_is_none(value):
    assert usage_from_openai(value) is None


# a usage object without valid prompt and completion counts is no usage: the estimator bills the call
INCOMPLETE = [
    {},
    {"prompt_tokens": None, "completion_tokens": None},
    {"prompt_tokens": 10, "completion_tokens": None},
    {"prompt_tokens": 10},
    {"completion_tokens": 5},
    {"prompt_tokens": -5, "completion_tokens": 3},
    {"prompt_tokens": 5, "completion_tokens": -3},
    {"prompt_tokens": "10", "completion_tokens": "3"},
    {"prompt_tokens": True, "completion_tokens": 3},
    {"prompt_tokens": float("nan"), "completion_tokens": 3},
    {"prompt_tokens": 5, "completion_tokens": float("inf")},
    {"prompt_tokens": -0.5, "completion_tokens": 3},
    {"prompt_tokens": [5], "completion_tokens": {"n": 3}},
    {"input_tokens": 12},
]


@pytest.mark.parametrize("usage", INCOMPLETE)
def test_incomplete_usage_is_no_usage(usage):
    assert usage_from_openai(usage) is None


def test_float_counts_are_rounded_up():
    u = usage_from_openai({"prompt_tokens": 1.5, "completion_tokens": 2.0001,
                           "prompt_tokens_details": {"cached_tokens": 0.2}})
    assert (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens) == (2, 3, 1)
    assert fields(usage_from_openai({"prompt_tokens": 7.0, "completion_tokens": 0.0})) == (7, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("value,count", [(0, 0), (7, 7), (10**12, 10**12), (0.0, 0), (0.1, 1), (3.0, 3),
                                         (2.5, 3), (-1, None), (-0.1, None), (None, None), (True, None),
                                         (False, None), ("5", None), (float("nan"), None),
                                         (float("inf"), None), ([], None)])
def test_token_count(value, count):
    assert token_count(value) == count


def test_zero_counts_are_valid_usage():
    assert fields(usage_from_openai({"prompt_tokens": 0, "completion_tokens": 0})) == (0, 0, 0, 0, 0, 0)


def test_plain_openai_usage():
    u = usage_from_openai({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
    assert fields(u) == (100, 20, 0, 0, 0, 0)
    assert u.uncached_prompt_tokens == 100


def test_openai_usage_with_details():
    u = usage_from_openai({
        "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
    assert fields(u) == (2006, 300, 1920, 0, 0, 256)
    assert u.uncached_prompt_tokens == 86


def test_anthropic_usage_normalised_by_the_adapter():
    # input 100, cache read 1000, cache write 500 of which 200 with the 1-hour TTL (docs/billing.md,
    # "The charge formula")
    u = usage_from_openai({
        "prompt_tokens": 1600, "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 500,
                                  "cache_write_1h_tokens": 200},
    })
    assert (u.prompt_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == \
        (1600, 1000, 300, 200)
    assert u.uncached_prompt_tokens == 100


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": None, "completion_tokens_details": None},
    {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": {}, "completion_tokens_details": {}},
    {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": "x", "completion_tokens_details": [1]},
    {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": None}},
    {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": -4},
     "completion_tokens_details": {"reasoning_tokens": "many"}},
])
def test_missing_or_malformed_details_read_as_zero(usage):
    u = usage_from_openai(usage)
    assert fields(u) == (10, 0, 0, 0, 0, 0)


def test_responses_style_names_are_read():
    u = usage_from_openai({"input_tokens": 12, "output_tokens": 3})
    assert (u.prompt_tokens, u.completion_tokens) == (12, 3)


def test_cache_counts_are_clamped_to_the_prompt():
    u = usage_from_openai({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {
        "cached_tokens": 8, "cache_write_tokens": 50, "cache_write_1h_tokens": 70}})
    assert (u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (8, 0, 2)
    assert u.uncached_prompt_tokens == 0


@SETTINGS
@given(usage_st)
def test_usage_is_never_negative_and_buckets_fit_in_the_prompt(usage):
    u = usage_from_openai(usage)
    prompt = token_count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = token_count(usage.get("completion_tokens", usage.get("output_tokens")))
    if prompt is None or completion is None:
        assert u is None
        return
    assert isinstance(u, TokenUsage)
    assert (u.prompt_tokens, u.completion_tokens) == (prompt, completion)
    assert all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields(u))
    assert u.cache_read_tokens + u.cache_write_tokens + u.cache_write_1h_tokens <= u.prompt_tokens
    assert u.uncached_prompt_tokens == \
        u.prompt_tokens - u.cache_read_tokens - u.cache_write_tokens - u.cache_write_1h_tokens


@SETTINGS
@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9),
       st.integers(0, 10**9))
def test_well_formed_counts_are_read_as_given(prompt, completion, read, write, reasoning):
    read = min(read, prompt)
    write = min(write, prompt - read)
    u = usage_from_openai({"prompt_tokens": prompt, "completion_tokens": completion,
                           "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
                           "completion_tokens_details": {"reasoning_tokens": reasoning}})
    assert fields(u) == (prompt, completion, read, write, 0, reasoning)


# ------------------------------------------------------------------ partial usage, embeddings usage
def test_fill_usage_keeps_valid_counts_and_estimates_the_rest():
    assert fields(fill_usage(None, 9, 4)) == (9, 4, 0, 0, 0, 0)
    assert fields(fill_usage({}, 9, 4)) == (9, 4, 0, 0, 0, 0)
    known = {"prompt_tokens": 60, "prompt_tokens_details": {"cached_tokens": 50}}
    assert fields(fill_usage(known, 9, 4)) == (60, 4, 50, 0, 0, 0)
    assert fields(fill_usage({**known, "completion_tokens": 7}, 9, 4)) == (60, 7, 50, 0, 0, 0)
    # an invalid prompt is estimated, and then its cache details do not count
    assert fields(fill_usage({**known, "prompt_tokens": -1, "completion_tokens": None}, 9, 4)) == (9, 4, 0, 0, 0, 0)


def test_embeddings_usage_needs_only_a_valid_prompt_count():
    assert prompt_from_openai({"prompt_tokens": 8, "total_tokens": 8}) == 8
    assert prompt_from_openai({"prompt_tokens": 7.2}) == 8
    for usage in (None, {}, {"prompt_tokens": None}, {"prompt_tokens": -3}, {"total_tokens": 8}, "8"):
        assert prompt_from_openai(usage) is None


def test_embeddings_input_estimate():
    assert estimate_input_tokens("hello world") == 3                 # 11 bytes
    assert estimate_input_tokens(["hi", "hello world", ""]) == 1 + 3 + 0
    assert estimate_input_tokens([1, 2, 3]) == 3                      # one token array
    assert estimate_input_tokens([[1, 2], [3, 4, 5]]) == 5
    assert estimate_input_tokens("नमस्ते") == 5                         # 18 UTF-8 bytes


# ------------------------------------------------------------------ estimator
@SETTINGS
@given(st.integers(0, 10**9), st.integers(0, 10**6))
def test_text_estimate_is_fragments_or_a_quarter_of_the_bytes(n_bytes, fragments):
    assert estimate_text_tokens(n_bytes, fragments) == max(fragments, math.ceil(n_bytes / 4))
    assert estimate_text_tokens(n_bytes) == -(-n_bytes // 4)
    assert estimate_text_tokens(n_bytes + 1, fragments) >= estimate_text_tokens(n_bytes, fragments)


def test_text_estimate_examples():
    assert estimate_text_tokens(0) == 0
    assert estimate_text_tokens(1) == 1
    assert estimate_text_tokens(8, 5) == 5
    assert estimate_text_tokens(9, 2) == 3


@SETTINGS
@given(st.lists(st.text(max_size=80), max_size=6))
def test_prompt_estimate_follows_the_documented_formula(texts):
    body = {"messages": [{"role": "user", "content": t} for t in texts]}
    n = sum(len(b"user") + len(t.encode()) for t in texts)
    assert estimate_prompt_tokens(body) == math.ceil(n / 4) + 4 * len(texts) + 3


def test_prompt_estimate_counts_an_image_not_its_base64_and_counts_tools():
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    body = {"messages": [{"role": "user", "content": [img]}]}
    # an unreadable image: its typical size, never 100k bytes of base64 as text
    assert IMAGE_ESTIMATE <= estimate_prompt_tokens(body) < IMAGE_ESTIMATE + 100
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + "A" * 100_000}}
    audio = {"type": "input_audio", "input_audio": {"data": "A" * 100_000, "format": "wav"}}
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": [pdf, audio]}]}) < 100
    tools = [{"type": "function", "function": {"name": "f", "description": "d" * 4000}}]
    assert estimate_prompt_tokens({"messages": [], "tools": tools}) >= 1000


def test_usage_row_has_every_column_and_counts_units_from_tokens():
    from aicredits.store.billing_sql import USAGE_COLUMNS

    row = usage_row("c1", 7, "k1", 1234)
    assert set(row) == set(USAGE_COLUMNS) - {"cost", "hold"}
    assert (row["request_id"], row["endpoint"], row["status"], row["end_state"], row["units"]) == \
        ("c1", "chat", 200, "completed", 0)
    usage = TokenUsage(prompt_tokens=100, completion_tokens=20, cache_read_tokens=30, reasoning_tokens=5)
    row = usage_row("c2", 7, None, 1, usage=usage, status=499, end_state="client_disconnect")
    assert (row["prompt_tokens"], row["cache_read_tokens"], row["reasoning_tokens"], row["units"]) == (100, 30, 5, 120)
    assert (row["status"], row["end_state"], row["key_id"]) == (499, "client_disconnect", None)
    assert usage_row("c3", 7, None, 1, usage=usage, units=9)["units"] == 9   # seconds, characters, images
