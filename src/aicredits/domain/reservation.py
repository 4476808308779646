"""Holds: the worst-case cost reserved before a call, and the 402 that names what would fit.

The hold is an upper bound of what the call can cost, so a charge never exceeds its hold and
concurrent calls never spend a wallet below zero:
  prompt bound  = min(context window, text bytes + 8 per message + 16) tokens
                  + IMAGE_TOKEN_BOUND per image part, priced at the dearest input bucket
                  (a BPE token is at least one byte of text, so bytes bound tokens)
  output bound  = max_tokens (or max_completion_tokens) x n, at the output price
When the client gives no max_tokens, the largest affordable value (up to the model's
max_output_tokens) is sent upstream instead. For a model priced by prompt-size tiers, both
prices are those of `hold_prices(prices, prompt bound)`: the dearest tier the prompt bound
can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from aicredits.domain.money import MICROS_PER_INR, Micros, ceil_fraction, format_inr
from aicredits.domain.pricing import TokenPrices

IMAGE_TOKEN_BOUND = 50_000
PER_MESSAGE_TOKENS = 8
DEFAULT_MAX_OUTPUT = 4096


def _text_bytes(value) -> tuple[int, int]:
    """(utf-8 bytes of every string inside value, image parts)"""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")), 0
    if isinstance(value, dict):
        total, images = 0, 0
        if value.get("type") in ("image_url", "input_image", "image"):
            images += 1
        for k, v in value.items():
            if k in ("image_url",) and isinstance(v, (dict, str)):
                continue   # the image is bounded per part, not by its URL's length
            b, i = _text_bytes(v)
            total += b + (len(k.encode("utf-8", "surrogatepass")) if isinstance(k, str) else 0)
            images += i
        return total, images
    if isinstance(value, (list, tuple)):
        total, images = 0, 0
        for v in value:
            b, i = _text_bytes(v)
            total += b
            images += i
        return total, images
    if value is None or isinstance(value, bool):
        return 4, 0
    return len(str(value)), 0


def prompt_token_bound(body: dict, context_window: int | None) -> int:
    """Upper bound of the prompt tokens a chat request can be billed for."""
    messages = body.get("messages") or []
    text, images = _text_bytes(messages)
    extra, extra_images = _text_bytes([body.get("tools"), body.get("response_format"),
                                       body.get("tool_choice"), body.get("functions")])
    bound = text + extra + PER_MESSAGE_TOKENS * len(messages) + 16
    images += extra_images
    if context_window:
        bound = min(bound, context_window)
    return bound + IMAGE_TOKEN_BOUND * images


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
    of text, plus per-message overhead and IMAGE_TOKEN_BOUND per image), so the tier is chosen
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
    inject_max_tokens: bool   # the gateway must send max_tokens upstream (client gave none)


class Refusal(Exception):
    def __init__(self, message: str, *, key_limited: bool) -> None:
        super().__init__(message)
        self.message = message
        self.key_limited = key_limited


def plan_hold(*, available: Micros, key_headroom: Micros | None, prompt_cost: Fraction,
              output_price: Fraction, requested_max: int | None, model_cap: int | None,
              n: int = 1) -> HoldPlan:
    """Decide the hold for a token-priced call, or raise Refusal with what would fit."""
    key_limited = key_headroom is not None and key_headroom < available
    headroom = min(available, key_headroom) if key_headroom is not None else available
    who = "the key's credit limit" if key_limited else "the wallet"
    per_token = output_price * max(1, n)
    room = Fraction(headroom) - prompt_cost
    fit = int(room // per_token) if per_token > 0 else (10**12 if room >= 0 else -1)
    if requested_max is not None:
        amount = ceil_fraction(prompt_cost + per_token * requested_max)
        if amount <= headroom:
            return HoldPlan(amount, requested_max, False)
        if model_cap:
            fit = min(fit, model_cap)
        if fit >= 1:
            raise Refusal(
                f"Insufficient credits: max_tokens={requested_max} needs up to "
                f"{format_inr(amount)} INR but {who} has {format_inr(max(headroom, 0))} INR available; "
                f"max_tokens <= {fit} would fit.", key_limited=key_limited)
        raise _too_poor(prompt_cost, per_token, headroom, who, key_limited)
    cap = model_cap or DEFAULT_MAX_OUTPUT
    if fit < 1:
        raise _too_poor(prompt_cost, per_token, headroom, who, key_limited)
    tokens = min(cap, fit)
    amount = ceil_fraction(prompt_cost + per_token * tokens)
    return HoldPlan(amount, tokens, True)


def _too_poor(prompt_cost: Fraction, per_token: Fraction, headroom: Micros, who: str,
              key_limited: bool) -> Refusal:
    need = ceil_fraction(prompt_cost + per_token)
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
