"""What a provider answered, read by one rule for every endpoint (docs/billing.md):

- its usage: an object without valid prompt and completion counts is no usage; the estimator
  bills the call and one warning names the provider and model (`reported_usage`);
- a 200 answer the gateway cannot read as the endpoint's answer: the client gets 502
  `upstream_error`, the call is recorded `malformed_response` and charged the provider's
  reported usage if it sent valid usage, else nothing; the hold is settled at once
  (`reject_malformed`).
"""

from __future__ import annotations

import logging
from typing import NoReturn

import orjson

from aicredits.domain.pricing import TokenUsage
from aicredits.domain.usage import prompt_from_openai, usage_from_openai
from aicredits.errors import UpstreamError
from aicredits.services.metering import Meter, Metering

log = logging.getLogger("aicredits.usage")


def _shown(usage: object) -> str:
    try:
        text = orjson.dumps(usage).decode()
    except TypeError:
        text = type(usage).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def warn_incomplete(meter: Meter, usage: object) -> None:
    log.warning("The %s provider sent usage without valid token counts for %s (request %s): %s; "
                "the call is billed by the estimator.", meter.provider or "?", meter.model, meter.request_id,
                _shown(usage))


def reported_usage(meter: Meter, usage: object) -> TokenUsage | None:
    """The provider's usage, or None (the caller estimates) when it sent none or an incomplete
    one; the latter is logged once."""
    if usage is None:
        return None
    found = usage_from_openai(usage)
    if found is None:
        warn_incomplete(meter, usage)
    return found


def reported_prompt(meter: Meter, usage: object) -> int | None:
    """An embeddings call's input count as the provider reported it (embeddings have no
    completion), or None as for `reported_usage`."""
    if usage is None:
        return None
    found = prompt_from_openai(usage)
    if found is None:
        warn_incomplete(meter, usage)
    return found


async def reject_malformed(metering: Metering, meter: Meter, problem: str, charge: int) -> NoReturn:
    """Settle a call whose 200 answer is unreadable (`charge`: its reported usage's cost, or 0)
    and raise the client's 502."""
    exc = UpstreamError(f"The {meter.provider or 'upstream'} provider sent a malformed response: {problem}.")
    meter.status, meter.error, meter.end_state = exc.status, exc.message, "malformed_response"
    log.warning("malformed answer from the %s provider for %s (request %s): %s", meter.provider or "?",
                meter.model, meter.request_id, problem)
    await metering.settle(meter, charge)
    raise exc


def as_served(data: dict, raw: bytes | None, model: str) -> bytes:
    """An answer's bytes with its `model` the gateway's id of the model that served it (the id
    the client asked for, e.g. `demo/echo`, or the fallback that answered), not the upstream's
    own name (`echo`, `gpt-4o-mini-2024-07-18`), which the usage record's `deployment` keeps.
    The upstream's bytes as they are when they already say so; else `data` is changed and
    serialized."""
    if raw is not None and data.get("model") == model:
        return raw
    data["model"] = model
    return orjson.dumps(data)
