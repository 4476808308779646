"""Holds: the worst-case cost reserved before a call, and the 402 that names what would fit.

The hold is an upper bound of what the call can cost, so a charge never exceeds its hold and
concurrent calls never spend a wallet below zero:
  prompt bound  = min(context window, text bytes + 8 per message + 16 + each image, PDF and
                  audio part by the model's documented formula + the provider's hidden tool
                  prompt) tokens, priced at the dearest input bucket (a BPE token is at least
                  one byte of text, so bytes bound tokens); the whole window when a part's size
                  is not in the request (prompt_token_bound)
  output bound  = max_tokens (or max_completion_tokens) x n, at the output price
When the client gives no max_tokens, or one above the model's max_output_tokens, the largest
affordable value up to max_output_tokens is sent upstream in its place. For a model priced by prompt-size tiers, both
prices are those of `hold_prices(prices, prompt bound)`: the dearest tier the prompt bound
can reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from aicredits.domain.media import NO_FORMULA, InputCosts, PromptFacts, read_prompt
from aicredits.domain.money import MICROS_PER_INR, Micros, format_inr
from aicredits.domain.pricing import TokenPrices

PER_MESSAGE_TOKENS = 8
DEFAULT_MAX_OUTPUT = 4096
# the window assumed for a model whose catalog entry gives none, when a part's size is unknown
UNKNOWN_WINDOW = 1_048_576


def prompt_token_bound(body: dict | PromptFacts, context_window: int | None,
                       costs: InputCosts | None = None) -> int:
    """Upper bound of the prompt tokens a chat request can be billed for by one model.

    text     UTF-8 bytes of every string (a BPE token is at least one byte) + 8 per message + 16
    media    each image, PDF and audio part by the model's documented formula (`costs`, from
             its provider adapter), plus the system prompt its provider adds when tools are sent
    Capped by the context window (a provider refuses a longer prompt). A part whose size the
    request does not carry (a file id or URL, an item reference), or that no formula bounds,
    makes the bound the whole window (UNKNOWN_WINDOW more when the model has none)."""
    facts = body if isinstance(body, PromptFacts) else read_prompt(body)
    costs = costs or NO_FORMULA
    total = facts.text_bytes + PER_MESSAGE_TOKENS * facts.messages + 16
    unknown = facts.unknown > 0
    for size, detail in facts.images:
        tokens = costs.image.tokens(size, detail) if costs.image is not None else None
        if tokens is None:
            unknown = True
        else:
            total += tokens
    for pages in facts.pdf_pages:
        if pages is None or costs.pdf_page is None:
            unknown = True
        else:
            total += pages * costs.pdf_page
    for seconds in facts.audio_seconds:
        if seconds is None or costs.audio_per_second is None:
            unknown = True
        else:
            total += math.ceil(seconds) * costs.audio_per_second
    if facts.tools:
        total += costs.tool_prompt
    if unknown:
        return context_window if context_window else total + UNKNOWN_WINDOW
    return min(total, context_window) if context_window else total


def hold_prices(prices: TokenPrices, prompt_bound: int) -> TokenPrices:
    """The flat prices a hold multiplies by: `prompt_bound x .max_input` is the prompt cost and
    `.output` the output price given to plan_hold. Bucket by bucket the dearest of every price
    tier a prompt of at most `prompt_bound` tokens can be billed at (the base tier, and each
    tier whose `above_prompt_tokens` is below the bound).

    Why the bound and not the estimate: settle caps a charge at its hold, so a hold priced at
    a cheaper tier than the call lands in loses money. The tier is picked by the prompt count
    the provider reports, which the gateway cannot know before the call. The estimator
    (domain/usage.py, ceil(bytes / 4) + 4 per message + 3) has no upper error bound: a BPE
    token is between one byte and many, so non-English text, base64 or emoji can come out at
    up to 4x the estimate, and no fixed margin around the threshold would be safe. The one
    upper bound the hold already rests on is prompt_token_bound (a token is at least one byte
    of text, plus per-message overhead and each media part by its formula), so the tier is chosen
    from that bound. If the bound does not exceed a threshold, no prompt it covers can be
    billed above it; if it does, the hold assumes the dearer tier.

    Then for any reported prompt P <= bound and completion C <= max_tokens x n the charge,
    sum(bucket tokens x price at P's tier) + C x output at P's tier, is at most
    bound x max_input + max_tokens x n x output of these prices, since P's tier is one of
    those reached. The cost of the rule: a prompt whose bytes pass the threshold but whose
    tokens do not (English text of roughly 50k to 200k tokens for a 200k tier) is held at the
    dearer tier and charged at the base one; the difference goes back to the wallet when the
    call settles. A fallback chain passes max_prices(...) here, whose tiers already dominate
    every model of the chain at every prompt size.
    """
    return prices.dearest_up_to(prompt_bound)


@dataclass(frozen=True)
class HoldPlan:
    amount: Micros
    max_tokens: int           # output tokens per choice the hold covers
    inject_max_tokens: bool   # the gateway sends max_tokens upstream (the client gave none, or more than the cap)


class Refusal(Exception):
    def __init__(self, message: str, *, key_limited: bool) -> None:
        super().__init__(message)
        self.message = message
        self.key_limited = key_limited


def plan_hold(*, available: Micros, key_headroom: Micros | None, prompt_cost: Fraction,
              output_price: Fraction, requested_max: int | None, model_cap: int | None,
              n: int = 1) -> HoldPlan:
    """Decide the hold for a token-priced call, or raise Refusal with what would fit.

    Worked in integers over the two prices' common denominator `d` (the prompt cost is
    `prompt / d`, the output price of all `n` choices `per_token / d` micros a token): the same
    numbers as in Fractions, without a Fraction per step (tests/domain/test_reservation.py
    checks them against the Fraction arithmetic)."""
    key_limited = key_headroom is not None and key_headroom < available
    headroom = min(available, key_headroom) if key_headroom is not None else available
    who = "the key's credit limit" if key_limited else "the wallet"
    pd, od = prompt_cost.denominator, output_price.denominator
    d = pd // math.gcd(pd, od) * od
    prompt = prompt_cost.numerator * (d // pd)
    per_token = output_price.numerator * (d // od) * max(1, n)
    room = headroom * d - prompt
    fit = room // per_token if per_token > 0 else (10**12 if room >= 0 else -1)
    if requested_max is not None:
        asked = f"max_tokens={requested_max}"
        # the model writes at most its cap: a larger value is held, and sent upstream, as the cap
        # (so a 402's "max_tokens <= N would fit" is exact: every value above N is refused)
        capped = model_cap is not None and model_cap > 0 and requested_max > model_cap
        if capped and model_cap is not None:
            requested_max = model_cap
            asked += f" (the model writes at most {model_cap})"
        amount = -(-(prompt + per_token * requested_max) // d)
        if amount <= headroom:
            return HoldPlan(amount, requested_max, capped)
        if model_cap:
            fit = min(fit, model_cap)
        if fit >= 1:
            raise Refusal(
                f"Insufficient credits: {asked} needs up to "
                f"{format_inr(amount)} INR but {who} has {format_inr(max(headroom, 0))} INR available; "
                f"max_tokens <= {fit} would fit.", key_limited=key_limited)
        raise _too_poor(-(-(prompt + per_token) // d), headroom, who, key_limited)
    cap = model_cap or DEFAULT_MAX_OUTPUT
    if fit < 1:
        raise _too_poor(-(-(prompt + per_token) // d), headroom, who, key_limited)
    tokens = min(cap, fit)
    amount = -(-(prompt + per_token * tokens) // d)
    return HoldPlan(amount, tokens, True)


def _too_poor(need: Micros, headroom: Micros, who: str, key_limited: bool) -> Refusal:
    """`need`: the prompt and one output token (of every choice), rounded up to a micro."""
    return Refusal(
        f"Insufficient credits: this request needs at least {format_inr(need)} INR "
        f"(its prompt and one output token) but {who} has {format_inr(max(headroom, 0))} INR available. "
        f"Add at least {format_inr(max(need - headroom, 1))} INR"
        + (" or raise the key's limit." if key_limited else "."), key_limited=key_limited)


def plan_fixed_hold(*, available: Micros, key_headroom: Micros | None, cost: Micros) -> Micros:
    """A hold for a call whose worst case is a known amount (images, speech, audio)."""
    key_limited = key_headroom is not None and key_headroom < available
    headroom = min(available, key_headroom) if key_headroom is not None else available
    if cost <= headroom:
        return cost
    who = "the key's credit limit" if key_limited else "the wallet"
    raise Refusal(
        f"Insufficient credits: this request costs up to {format_inr(cost)} INR but {who} has "
        f"{format_inr(max(headroom, 0))} INR available.", key_limited=key_limited)


assert MICROS_PER_INR == 1_000_000
