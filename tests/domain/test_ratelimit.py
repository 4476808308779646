"""The sliding-window counter rules of per-key rpm/tpm (domain/ratelimit.py), with explicit times."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.ratelimit import (
    Counters,
    Refused,
    decide,
    per_window,
    refusal_message,
    request_bound,
    retry_after_seconds,
    scaled_estimate,
    token_bound,
    wait_ms,
)

W = 60_000
T0 = 1_800_000_000 * 1000 // W * W     # the start of a window
SETTINGS = settings(max_examples=300, deadline=None)


def fresh(now: int = T0) -> Counters:
    return Counters(window=now // W)


def test_rpm_admits_n_then_refuses_naming_the_limit():
    c = fresh()
    for i in range(3):
        assert c.admit(T0 + 10_000 + i, W, 3, None) is None
    refused = c.admit(T0 + 10_003, W, 3, None)
    assert refused is not None and refused.limits == (("rpm", 3),)
    assert c.requests == 3          # a refused request is not counted
    # this window is full: wait for it to end (50 s), then for the weight of its 3 requests to fall
    # to 2 (one third of the next window: 20 s)
    assert refused.retry_after == 70


def test_a_full_window_refuses_at_the_boundary_and_frees_gradually():
    c = fresh()
    for i in range(10):
        assert c.admit(T0 + W - 100 + i, W, 10, None) is None       # a burst at the window's very end
    assert c.admit(T0 + W, W, 10, None) is not None                # no second burst at the boundary
    # half-way through the next window the previous ten weigh five: five more fit
    admitted = sum(c.admit(T0 + W + W // 2, W, 10, None) is None for _ in range(8))
    assert admitted == 5        # estimate 5 + 4 = 9, plus the fifth itself = 10
    # two windows later nothing is left
    assert c.admit(T0 + 3 * W, W, 10, None) is None
    assert (c.prev_requests, c.requests) == (0, 1)


def test_tpm_refuses_once_tokens_reached_the_limit():
    c = fresh()
    assert c.admit(T0, W, None, 100) is None
    c.add_tokens(T0 + 1, W, 60)
    assert c.admit(T0 + 2, W, None, 100) is None        # 60 < 100: admitted, its tokens unknown yet
    c.add_tokens(T0 + 3, W, 60)
    refused = c.admit(T0 + 4, W, None, 100)
    assert refused is not None and refused.limits == (("tpm", 100),)
    # 120 tokens: wait for the window to end (59.996 s), then until 120 x (1 - e/W) < 100 (e > 10 s)
    assert refused.retry_after == 70
    assert c.requests == 0      # no rpm set: requests are not counted


def test_both_limits_over_names_both_and_waits_for_both():
    c = fresh()
    c.admit(T0, W, 1, 10)
    c.add_tokens(T0, W, 1000)
    refused = c.admit(T0 + 1, W, 1, 10)
    assert refused.limits == (("rpm", 1), ("tpm", 10))
    rpm_wait = wait_ms(0, 1, 1, W, request_bound(1, W))
    tpm_wait = wait_ms(0, 1000, 1, W, token_bound(10, W))
    assert refused.retry_after == retry_after_seconds(max(rpm_wait, tpm_wait))


def test_unlimited_is_never_refused_and_counts_nothing():
    c = fresh()
    for i in range(1000):
        assert c.admit(T0 + i, W, None, None) is None
    assert c.requests == 0


def test_clock_stepping_back_keeps_the_current_window():
    c = fresh(T0 + W)
    assert c.admit(T0 + W, W, 1, None) is None
    assert c.admit(T0 + W - 5, W, 1, None) is not None
    assert c.window == (T0 + W) // W


def test_retry_after_is_whole_seconds_rounded_up():
    assert [retry_after_seconds(ms) for ms in (0, 1, 999, 1000, 1001, 59_999)] == [1, 1, 1, 1, 2, 60]


def test_messages_name_the_limit_and_its_value():
    assert refusal_message(Refused((("rpm", 3),), 42), W) == (
        "Rate limit reached: this API key's rpm limit is 3 requests per minute. Retry after 42 s.")
    assert refusal_message(Refused((("tpm", 5000),), 7), 2000) == (
        "Rate limit reached: this API key's tpm limit is 5000 tokens per 2 s, and its recent calls used "
        "them. Retry after 7 s.")
    assert per_window(60_000) == "per minute" and per_window(1500) == "per 1.5 s"


# ---------------------------------------------------------------- properties
arrivals = st.lists(st.integers(min_value=0, max_value=4 * W), min_size=1, max_size=120).map(sorted)


@SETTINGS
@given(arrivals, st.integers(min_value=1, max_value=12))
def test_rpm_bounds_hold_for_any_arrivals(times, rpm):
    c = fresh()
    admitted = [t for t in times if c.admit(T0 + t, W, rpm, None) is None]
    # every window-aligned minute admits at most rpm
    for k in range(5):
        assert sum(1 for t in admitted if k * W <= t < (k + 1) * W) <= rpm
    # any minute-long span at most 2 x rpm - 1 (it overlaps two aligned windows, and the second
    # cannot fill while the first still weighs)
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + W) <= 2 * rpm - 1


@SETTINGS
@given(arrivals, st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=500),
       st.lists(st.integers(min_value=0, max_value=300), min_size=120, max_size=120))
def test_retry_after_is_exact_and_honest(times, rpm, tpm, tokens):
    """Refused at t: the wait it computes in ms is the first moment that passes (nothing else
    arriving meanwhile), and Retry-After (whole seconds) is never too early."""
    c = fresh()
    for t, n in zip(times, tokens, strict=False):
        now = T0 + t
        before = copy.deepcopy(c)
        refused = c.admit(now, W, rpm, tpm)
        if refused is None:
            c.add_tokens(now, W, n)
            continue
        probe = copy.deepcopy(before)
        probe.roll(now // W)
        elapsed = now - probe.window * W
        waits = []
        if scaled_estimate(probe.prev_requests, probe.requests, elapsed, W) > request_bound(rpm, W):
            waits.append(wait_ms(probe.prev_requests, probe.requests, elapsed, W, request_bound(rpm, W)))
        if scaled_estimate(probe.prev_tokens, probe.tokens, elapsed, W) > token_bound(tpm, W):
            waits.append(wait_ms(probe.prev_tokens, probe.tokens, elapsed, W, token_bound(tpm, W)))
        wait = max(waits)
        assert wait >= 1
        assert copy.deepcopy(before).admit(now + wait, W, rpm, tpm) is None
        assert copy.deepcopy(before).admit(now + wait - 1, W, rpm, tpm) is not None
        assert copy.deepcopy(before).admit(now + refused.retry_after * 1000, W, rpm, tpm) is None
        assert refused.retry_after * 1000 - wait < 1000


@SETTINGS
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6),
       st.integers(min_value=0, max_value=W - 1), st.integers(min_value=1, max_value=10**6))
def test_decide_matches_the_plain_estimate(prev, curr, elapsed, limit):
    """The integer rule equals the documented one: estimate + 1 <= rpm; estimate < tpm."""
    from fractions import Fraction
    estimate = Fraction(prev * (W - elapsed), W) + curr
    r = decide(elapsed, W, limit, None, prev, curr, 0, 0)
    assert (r is None) == (estimate + 1 <= limit)
    t = decide(elapsed, W, None, limit, 0, 0, prev, curr)
    assert (t is None) == (estimate < limit)


@pytest.mark.parametrize("rpm", [1, 2, 60])
def test_rpm_one_request_then_wait(rpm):
    """After rpm requests at a window's start, the next fits once the window has ended and the
    previous count has decayed by one request's worth."""
    c = fresh()
    for _ in range(rpm):
        assert c.admit(T0, W, rpm, None) is None
    refused = c.admit(T0, W, rpm, None)
    assert refused.retry_after == retry_after_seconds(W + W // rpm)
