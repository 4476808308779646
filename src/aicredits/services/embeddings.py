"""POST /v1/embeddings: priced by input tokens; the hold bounds them by the input's bytes. Without
a valid reported input count the estimator bills the call (domain/usage.py); an answer that is not
an embeddings list is a 502, charged its reported input count if valid (services/answers.py)."""

from __future__ import annotations

import base64
import struct
from typing import cast

import orjson

from aicredits.domain.answers import embeddings_answer_problem
from aicredits.domain.money import ceil_fraction
from aicredits.domain.pricing import TokenUsage, max_prices, token_prices
from aicredits.domain.reservation import hold_prices
from aicredits.domain.usage import estimate_input_tokens
from aicredits.errors import InvalidRequest
from aicredits.ports import KeyAuth
from aicredits.providers.base import EmbeddingsProvider
from aicredits.services.answers import as_served, reject_malformed, reported_prompt
from aicredits.services.fixed_price import FixedPriceService
from aicredits.services.metering import Meter
from aicredits.services.validation import whole_number

MAX_INPUTS = 2048


def _input_bound(value: str | list, window: int | None) -> int:
    """Upper bound of the tokens an embeddings input is billed for."""
    def one(item: str | list) -> int:
        if isinstance(item, str):
            n = len(item.encode("utf-8", "surrogatepass")) + 2
        else:   # a token array
            n = len(item)
        return min(n, window) if window else n
    if isinstance(value, str):
        return one(value)
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return one(value)
    return sum(one(v) for v in value)


def validate_embeddings(body: object) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"].strip():
        raise InvalidRequest("'model' is required and must be a string.", param="model")
    value = body.get("input")
    ok = isinstance(value, str) or (
        isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and (
            all(isinstance(v, str) for v in value)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or all(isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
                   for v in value)))
    if not ok:
        raise InvalidRequest("'input' must be a string, an array of up to 2048 strings, or token arrays.",
                             param="input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    whole_number(body, "dimensions")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions")
    return body


def encode_base64(data: dict) -> dict:
    """An upstream that only speaks float answered a base64 request: encode like OpenAI does
    (little-endian float32)."""
    for item in data.get("data") or ():
        vec = item.get("embedding")
        if isinstance(vec, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
    return data


class EmbeddingsService(FixedPriceService):
    async def create(self, body: object, auth: KeyAuth, request_id: str, started: float) -> tuple[bytes, Meter]:
        body = validate_embeddings(body)
        chain = self._router.chain(body["model"], "embeddings", body.get("models"))
        prices = max_prices([token_prices(s, self._rates) for s in chain])
        window = max((s.context_window or 0) for s in chain) or None
        bound = _input_bound(body["input"], window)
        worst = ceil_fraction(bound * hold_prices(prices, bound).input)   # the dearest tier it can reach
        meter = Meter(request_id, auth, "embeddings", started)
        upstream = {k: v for k, v in body.items() if k != "models"}
        result, target = await self._call(meter, chain, worst, lambda t: cast(EmbeddingsProvider, t.provider).embed(upstream, t))
        data = result.data
        reported = reported_prompt(meter, data.get("usage"))
        prices = token_prices(target.spec, self._rates)
        problem = embeddings_answer_problem(data)
        out = as_served(data, result.raw, target.spec.id) if problem is None else result.raw
        if problem is None and body.get("encoding_format") == "base64" and isinstance(data["data"][0]["embedding"], list):
            try:   # an upstream that only speaks float: encoded here, before the call is settled
                out = orjson.dumps(encode_base64(data))
            except (struct.error, OverflowError, TypeError):
                problem = "an embedding cannot be encoded as float32"
        if problem is not None:   # charged the reported input count if valid, else nothing
            meter.usage = TokenUsage(prompt_tokens=reported or 0)
            await reject_malformed(self._metering, meter, problem,
                                   prices.cost(meter.usage) if reported is not None else 0)
        prompt = reported if reported is not None else estimate_input_tokens(body["input"])
        meter.usage = TokenUsage(prompt_tokens=prompt)
        await self._metering.settle(meter, prices.cost(meter.usage))
        return (out if out is not None else orjson.dumps(data)), meter
