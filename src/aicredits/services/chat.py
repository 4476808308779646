"""Chat completions: resolve -> reserve -> call -> settle -> record, for every way a call ends.

End states (docs/billing.md): completed, upstream_error (before output: nothing charged),
upstream_cut (prompt + delivered output), client_disconnect (prompt + delivered output; the
upstream is cancelled at once), zero_output_error (nothing charged).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

import orjson

from aicredits.domain.catalog import Catalog, ModelSpec
from aicredits.domain.money import micros_to_inr
from aicredits.domain.pricing import Rates, TokenPrices, TokenUsage, token_prices
from aicredits.domain.reservation import HoldPlan, plan_hold, prompt_token_bound
from aicredits.domain.streaming import StreamMeter
from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens, usage_from_openai
from aicredits.errors import GatewayError, InternalError, UpstreamError, UpstreamTimeout
from aicredits.ports import KeyAuth, Settlement, SettleResult
from aicredits.providers.base import DONE, ChatProvider, UpstreamCut
from aicredits.services.billing import Billing
from aicredits.services.validation import validate_chat

log = logging.getLogger("aicredits.calls")
GATEWAY_FIELDS = ("cache", "no_cache", "models")


@dataclass
class Call:
    """One chat call in flight."""
    request_id: str
    call_id: str
    auth: KeyAuth
    spec: ModelSpec
    provider: ChatProvider
    body: dict
    prices: TokenPrices
    plan: HoldPlan
    started: float
    stream: bool
    include_usage: bool
    upstream_seconds: float = 0.0
    settled: SettleResult | None = None
    charge: int = 0
    end_state: str = "completed"
    status: int = 200
    error: str | None = None
    client_gone: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage)

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)


class ChatService:
    def __init__(self, catalog: Catalog, rates: Rates, providers: dict[str, ChatProvider], billing: Billing) -> None:
        self._catalog = catalog
        self._rates = rates
        self._providers = providers
        self._billing = billing
        self._prices: dict[str, TokenPrices] = {}

    def _token_prices(self, spec: ModelSpec) -> TokenPrices:
        p = self._prices.get(spec.id)
        if p is None:
            p = self._prices[spec.id] = token_prices(spec, self._rates)
        return p

    # ------------------------------------------------------------------ start
    async def open(self, body: object, auth: KeyAuth, request_id: str, started: float) -> Call:
        body = validate_chat(body)
        spec, provider = self._billing.resolve(body["model"], "chat", self._providers)
        prices = self._token_prices(spec)
        n = body.get("n") or 1
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        prompt_cost = prompt_token_bound(body, spec.context_window) * prices.max_input

        def planner(available: int, key_headroom: int | None) -> HoldPlan:
            return plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                             output_price=prices.output, requested_max=requested,
                             model_cap=spec.max_output_tokens, n=n)

        call_id = uuid.uuid4().hex
        plan = await self._billing.reserve(call_id, auth, planner)
        upstream = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
        if plan.inject_max_tokens:
            key = "max_tokens" if provider.kind not in ("openai",) else "max_completion_tokens"
            upstream[key] = plan.max_tokens
        stream = bool(body.get("stream"))
        include_usage = bool(stream and (body.get("stream_options") or {}).get("include_usage"))
        return Call(request_id, call_id, auth, spec, provider, upstream, prices, plan, started, stream,
                    include_usage)

    # ------------------------------------------------------------------ settle
    def _cost(self, call: Call, usage: TokenUsage) -> int:
        call.usage = usage
        return min(call.prices.cost(usage), call.plan.amount)

    async def _settle(self, call: Call, charge: int) -> SettleResult:
        call.charge = charge
        usage = call.usage
        row = {
            "call_id": call.call_id, "request_id": call.request_id, "account_id": call.auth.account_id,
            "key_id": call.auth.key_id, "model": call.spec.id, "provider": call.spec.provider,
            "deployment": call.provider.name, "endpoint": "chat", "stream": call.stream,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens, "reasoning_tokens": usage.reasoning_tokens,
            "units": usage.prompt_tokens + usage.completion_tokens,
            "latency_ms": int((time.perf_counter() - call.started) * 1000),
            "overhead_ms": int(call.overhead_ms()), "status": call.status, "cache": "bypass",
            "end_state": call.end_state, "error": call.error, "created_at": int(time.time() * 1000),
        }
        call.settled = await self._billing.settle(
            Settlement(call.call_id, call.auth.account_id, call.auth.key_id, charge, row, note=call.spec.id))
        log.info("call", extra={"fields": {
            "request_id": call.request_id, "model": call.spec.id, "status": call.status, "end": call.end_state,
            "stream": call.stream, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cost_micros": call.settled.charged,
            "latency_ms": row["latency_ms"], "overhead_ms": row["overhead_ms"]}})
        return call.settled

    async def _fail(self, call: Call, exc: GatewayError, end_state: str = "upstream_error") -> None:
        call.end_state, call.status, call.error = end_state, exc.status, exc.message
        await self._billing.shielded(self._settle(call, 0))

    # ------------------------------------------------------------------ non-streaming
    async def complete(self, call: Call) -> bytes:
        t = time.perf_counter()
        try:
            result = await call.provider.chat(call.body, call.spec)
        except GatewayError as exc:
            call.upstream_seconds += time.perf_counter() - t
            await self._fail(call, exc)
            raise
        except BaseException:
            call.upstream_seconds += time.perf_counter() - t
            await self._fail(call, InternalError("The call failed inside the gateway."), "gateway_error")
            raise
        call.upstream_seconds += time.perf_counter() - t
        data = result.data
        usage = usage_from_openai(data.get("usage"))
        choices = data.get("choices") or []
        finish = choices[0].get("finish_reason") if choices and isinstance(choices[0], dict) else None
        if usage is None:
            text = orjson.dumps([c.get("message") for c in choices if isinstance(c, dict)])
            usage = TokenUsage(prompt_tokens=estimate_prompt_tokens(call.body),
                               completion_tokens=estimate_text_tokens(len(text)))
        if finish == "error" and usage.completion_tokens == 0:
            exc = UpstreamError("The upstream finished with an error and no output.")
            await self._fail(call, exc, "zero_output_error")
            raise exc
        await self._billing.shielded(self._settle(call, self._cost(call, usage)))
        return result.raw if result.raw is not None else orjson.dumps(data)

    # ------------------------------------------------------------------ streaming
    async def start_stream(self, call: Call):
        """Open the upstream stream; errors here happen before any output (charged nothing)."""
        t = time.perf_counter()
        try:
            upstream = await call.provider.stream(call.body, call.spec)
        except GatewayError as exc:
            call.upstream_seconds += time.perf_counter() - t
            await self._fail(call, exc)
            raise
        except BaseException:
            call.upstream_seconds += time.perf_counter() - t
            await self._fail(call, InternalError("The call failed inside the gateway."), "gateway_error")
            raise
        call.upstream_seconds += time.perf_counter() - t
        return upstream

    async def relay(self, call: Call, upstream) -> AsyncIterator[bytes]:
        """The client's SSE bytes, batch by batch as the upstream sends them. Settles in
        `finally` whatever ends the stream (a cancelled task included)."""
        meter = StreamMeter()
        cut: str | None = None
        cut_timeout = False
        try:
            async for batch in upstream.batches():
                out = []
                for ev in batch:
                    obj = ev.data
                    if obj is DONE:
                        meter.done = True
                        break
                    if obj is None:
                        if ev.raw is not None:
                            out.append(ev.raw)
                        continue
                    meter.observe(obj)
                    if meter.error is not None:
                        break
                    if "usage" in obj and obj.get("usage") and not obj.get("choices"):
                        # the usage chunk: priced here, shown only when the client asked for it
                        if call.include_usage:
                            usage = usage_from_openai(obj["usage"]) or TokenUsage()
                            obj = dict(obj, usage=dict(obj["usage"], cost=micros_to_inr(self._cost(call, usage))))
                            out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
                        continue
                    out.append(ev.raw if ev.raw is not None else b"data: " + orjson.dumps(obj) + b"\n\n")
                if out:
                    yield b"".join(out)
                if meter.done or meter.error is not None:
                    break
            if meter.error is not None:
                cut = str(meter.error.get("message") or "The upstream reported an error mid-stream.")
            elif not meter.complete:
                cut = "The upstream stream ended before it finished."
        except UpstreamCut as exc:
            cut, cut_timeout = str(exc), exc.timeout
        except asyncio.CancelledError:
            if not call.client_gone:
                cut = "The gateway stopped during the call."
                raise
        finally:
            await upstream.aclose()
            tail = await self._billing.shielded(self._finish_stream(call, meter, cut, cut_timeout))
        if tail:
            yield tail

    async def _finish_stream(self, call: Call, meter: StreamMeter, cut: str | None, cut_timeout: bool) -> bytes:
        if call.client_gone:
            call.end_state, call.status = "client_disconnect", 499
        elif cut is not None:
            call.end_state = "upstream_cut" if meter.delivered_output else "zero_output_error"
            call.status, call.error = (504 if cut_timeout else 502), cut
        usage = usage_from_openai(meter.usage)
        if usage is None:
            # no usage arrived: the documented estimator counts the prompt and what was delivered
            usage = TokenUsage(prompt_tokens=estimate_prompt_tokens(call.body),
                               completion_tokens=estimate_text_tokens(meter.text_bytes, meter.fragments))
        if call.end_state != "completed" and not meter.delivered_output:
            call.usage = usage
            charge = 0
        else:
            charge = self._cost(call, usage)
        await self._settle(call, charge)
        if cut is None or call.client_gone:
            return b""
        err = (UpstreamTimeout if cut_timeout else UpstreamError)(cut)
        chunk = {"id": meter.id or "chatcmpl-" + call.call_id, "object": "chat.completion.chunk",
                 "created": meter.created or int(time.time()), "model": meter.model or call.spec.upstream_id,
                 "error": err.body()["error"],
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
