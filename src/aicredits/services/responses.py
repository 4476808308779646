"""POST /v1/responses: OpenAI's Responses API for every model.

Native path: when every deployment that may serve the call (the model, the request's
`models`, its fallbacks) is an OpenAI or Azure OpenAI provider, the request goes to the
provider's own /responses as is (model rewritten, gateway fields stripped, max_output_tokens
injected when the client gave none) and the answer or its event stream comes back as sent.
The hold and the charge are the chat path's: prompt bound x dearest input price + output
bound x output price; the charge from the usage of the answer or of the terminal event
(response.completed / response.incomplete / response.failed), cached input at its price.

Translated path (every other provider): the request becomes a chat completions request and
runs through ChatService (same routing, holds and settlement as /v1/chat/completions); the
answer is turned back into a Response, the chat stream into Responses events.

How a stream ends (docs/billing.md):
  terminal event completed/incomplete  actual usage; the event's response.usage gets `cost` (INR)
  response.failed                      prompt + delivered output; nothing when no output came
  upstream cut / error event           `event: error` {"type":"error","code":"upstream_error",...} and the end;
                                       prompt + delivered output (estimated when no usage came)
  client disconnect                    the upstream is closed at once; prompt + delivered output
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import cast

import orjson

from aicredits.domain.answers import responses_answer_problem
from aicredits.domain.catalog import ModelSpec
from aicredits.domain.money import micros_to_inr
from aicredits.domain.pricing import Rates, TokenUsage, max_prices
from aicredits.domain.reservation import HoldPlan, hold_prices, plan_hold
from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens
from aicredits.errors import UpstreamError
from aicredits.ports import KeyAuth
from aicredits.providers.base import (
    DONE,
    ChatResult,
    ChatStream,
    ResponsesProvider,
    StreamEvent,
    native_responses,
)
from aicredits.providers.http import scrub
from aicredits.providers.sse import EventSplitter, event_data
from aicredits.services.answers import as_served, reject_malformed, reported_usage
from aicredits.services.chat import ChatService
from aicredits.services.metering import Meter, Metering
from aicredits.services.prompt_bound import chain_bound, prompt_facts
from aicredits.services.responses_stream import ResponsesEvents, sse
from aicredits.services.responses_translate import (
    GATEWAY_FIELDS,
    as_chat_view,
    chat_to_response,
    check_native,
    responses_to_chat,
    unbounded_prompt,
    usage_block,
    validate_responses,
)
from aicredits.services.routing import Router, Target

MIN_OUTPUT = 16   # OpenAI refuses a smaller max_output_tokens
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
OUTPUT_DELTAS = ("response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
                 "response.custom_tool_call_input.delta", "response.reasoning_text.delta",
                 "response.reasoning_summary_text.delta", "response.audio.transcript.delta")


@dataclass
class ResponsesCall:
    meter: Meter
    body: dict        # the client's request, validated
    native: bool
    stream: bool


class _Native:
    """A native stream's events for Metering.relay, and what they delivered: relayed as sent,
    the terminal event's usage with its cost."""
    __slots__ = ("bytes", "call", "charge", "ended", "error", "failure", "fragments", "seq", "service", "terminal",
                 "usage")

    def __init__(self, service: ResponsesService, call: ResponsesCall) -> None:
        self.service = service
        self.call = call
        self.bytes = self.fragments = self.seq = 0
        self.terminal: str | None = None
        self.usage: TokenUsage | None = None
        self.failure: str | None = None
        self.error: dict | None = None
        self.charge: int | None = None
        self.ended = False

    def batch(self, batch: list) -> bytes:
        out = []
        for ev in batch:
            obj = ev.data
            if obj is None or obj is DONE:
                if obj is None and ev.raw is not None:
                    out.append(ev.raw)     # comments, keep-alives
                continue
            kind = obj.get("type")
            resp = obj.get("response")
            if isinstance(resp, dict) and resp.get("model", self.call.meter.model) != self.call.meter.model:
                # the gateway's model id (services/answers.py, as_served)
                obj["response"] = {**resp, "model": self.call.meter.model}
                ev = StreamEvent(obj)
            if isinstance(obj.get("sequence_number"), int):
                self.seq = obj["sequence_number"]
            if kind == "error" or (kind is None and obj.get("error") is not None):
                self.error = obj.get("error")
                self.error = self.error if isinstance(self.error, dict) else obj
                break
            if kind in OUTPUT_DELTAS and isinstance(obj.get("delta"), str) and obj["delta"]:
                self.bytes += len(obj["delta"].encode("utf-8", "surrogatepass"))
                self.fragments += 1
            if kind in TERMINAL:
                out.append(self.service._terminal(self.call, self, kind, obj, ev.raw))
                break
            out.append(ev.raw if ev.raw is not None else sse(kind or "message", obj))
        self.ended = self.error is not None or self.terminal is not None
        return b"".join(out)

    def cut(self) -> str | None:
        if self.error is not None:
            return scrub(str(self.error.get("message") or "The upstream reported an error mid-stream."))
        return "The upstream stream ended before it finished." if self.terminal is None else None

    def finish(self, cut: str | None, timeout: bool) -> Awaitable[bytes]:
        return self.service._finish_native(self.call, self, cut, timeout)

    def accrued(self) -> int:
        """The charge of a cut now: its terminal event's charge once that came, else prompt +
        delivered output (nothing while none was delivered)."""
        if self.charge is not None:
            return self.charge
        return self.service._stream_charge(self.call, self, False)


class ResponsesService:
    def __init__(self, router: Router, rates: Rates, metering: Metering, chat: ChatService, *,
                 max_seconds: float = 900.0) -> None:
        self._max_seconds = max_seconds
        self._router = router
        self._rates = rates
        self._metering = metering
        self._chat = chat

    # ------------------------------------------------------------------ start
    def _native(self, chain: list[ModelSpec]) -> bool:
        providers = self._router.providers
        return all(native_responses(providers[d.provider])
                   for spec in chain for d in spec.deployments if d.provider in providers)

    async def open(self, body: object, auth: KeyAuth, request_id: str, started: float) -> ResponsesCall:
        body = validate_responses(body)
        stream = bool(body.get("stream"))
        chain = self._router.chain(body["model"], "chat", body.get("models"))
        if not self._native(chain):
            meter = await self._chat.open(responses_to_chat(body), auth, request_id, started)
            meter.endpoint = "responses"
            return ResponsesCall(meter, body, False, stream)
        check_native(body)
        prices = max_prices([self._chat.prices(s) for s in chain])
        caps = [s.max_output_tokens for s in chain if s.max_output_tokens]
        cap = min(caps) if caps else None
        facts = await prompt_facts(as_chat_view(body))
        facts.unknown += unbounded_prompt(body)   # a stored response, conversation or prompt
        bound = chain_bound(self._router, chain, facts)
        held = hold_prices(prices, bound)   # the dearest price tier a prompt this long can reach
        prompt_cost = bound * held.max_input
        requested = body.get("max_output_tokens")

        def planner(available: int, key_headroom: int | None) -> HoldPlan:
            def plan(req: int | None) -> HoldPlan:
                return plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                                 output_price=held.output, requested_max=req, model_cap=cap)
            p = plan(requested)
            if p.inject_max_tokens and p.max_tokens < MIN_OUTPUT:
                return plan(MIN_OUTPUT)   # raises the 402 naming what would fit
            return p

        meter = Meter(request_id, auth, "responses", started, stream=stream)
        meter.model = chain[0].id
        plan = await self._metering.hold(meter, planner)
        meter.body = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
        if plan.inject_max_tokens:
            meter.body["max_output_tokens"] = plan.max_tokens
        meter.chain = chain
        return ResponsesCall(meter, body, True, stream)

    def _charge(self, call: ResponsesCall, usage: TokenUsage) -> int:
        meter = call.meter
        meter.usage = usage
        return min(self._chat.prices(meter.served.spec).cost(usage), meter.hold)

    def _estimate(self, call: ResponsesCall, out_bytes: int, fragments: int = 0) -> TokenUsage:
        """The documented estimator (domain/usage.py) when the upstream sent no usage."""
        prompt = call.meter.estimated_prompt(lambda: estimate_prompt_tokens(as_chat_view(call.body)))
        return TokenUsage(prompt_tokens=prompt,
                          completion_tokens=estimate_text_tokens(out_bytes, fragments))

    # (both only reached when every provider of the chain is native: _native)
    async def _call(self, call: ResponsesCall) -> ChatResult:
        meter = call.meter

        def send(t: Target) -> Awaitable[ChatResult]:
            return cast(ResponsesProvider, t.provider).responses(meter.body, t)
        result, _ = await self._metering.route(meter, self._router, meter.chain, send)
        return result

    async def _open_stream(self, call: ResponsesCall) -> ChatStream:
        meter = call.meter

        def send(t: Target) -> Awaitable[ChatStream]:
            return cast(ResponsesProvider, t.provider).responses_stream(meter.body, t)
        upstream, _ = await self._metering.route(meter, self._router, meter.chain, send)
        return upstream

    # ------------------------------------------------------------------ non-streaming
    async def complete(self, call: ResponsesCall) -> bytes:
        meter = call.meter
        if not call.native:
            return await self._chat.complete(
                meter, lambda data, usage: orjson.dumps(chat_to_response(data, call.body, usage)))
        # bounded by the call's limit (Metering.route's deadline, from the request's start)
        result = await self._call(call)
        data = result.data
        usage = reported_usage(meter, data.get("usage"))
        problem = responses_answer_problem(data)
        if problem is None and usage is None:
            try:
                usage = self._estimate(call, len(orjson.dumps(data.get("output"))))
            except orjson.JSONEncodeError:   # nested past orjson's limit
                problem = "the answer cannot be read"
        if problem is not None:
            await reject_malformed(self._metering, meter, problem,
                                   self._charge(call, usage) if usage is not None else 0)
        assert usage is not None    # reported, or estimated above (else the answer was rejected)
        if data.get("status") == "failed" and usage.completion_tokens == 0:
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            exc = UpstreamError(scrub(str(err.get("message") or "The upstream response failed with no output.")))
            meter.usage = usage
            await self._metering.fail(meter, exc, "zero_output_error")
            raise exc
        await self._metering.settle(meter, self._charge(call, usage))
        return as_served(data, result.raw, meter.model)

    # ------------------------------------------------------------------ streaming
    async def start_stream(self, call: ResponsesCall) -> AsyncIterator[bytes]:
        """Open the upstream stream (retries and fallbacks happen here, before any output);
        the client's SSE bytes come from the returned iterator."""
        if call.native:
            upstream = await self._open_stream(call)
            return self._metering.relay(call.meter, upstream, _Native(self, call), self._max_seconds)
        upstream = await self._chat.start_stream(call.meter)
        return self._translate(call, self._chat.relay(call.meter, upstream))

    async def _translate(self, call: ResponsesCall, chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        """The chat relay's SSE (which holds the billing) as Responses events."""
        meter = call.meter
        tr = ResponsesEvents(call.body)
        split, failed = EventSplitter(), False
        try:
            yield b"".join(tr.start())
            async for piece in chunks:
                out: list[bytes] = []
                for ev in split.feed(piece):
                    payload = event_data(ev)
                    if not payload or payload == b"[DONE]":
                        continue
                    try:
                        obj = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(obj, dict):
                        continue
                    err = obj.get("error")
                    if err is not None:
                        failed = True
                        out.append(tr.error(err if isinstance(err, dict) else {"message": str(err)}))
                    else:
                        out.extend(tr.chunk(obj))
                if out:
                    yield b"".join(out)
        finally:
            await chunks.aclose()
        if failed or meter.client_gone:
            return
        usage = usage_block(meter.usage)
        if meter.settled is not None:
            usage["cost"] = micros_to_inr(meter.settled.charged)
        yield b"".join(tr.finish_events(usage))

    def _terminal(self, call: ResponsesCall, st: _Native, kind: str, obj: dict, raw: bytes | None) -> bytes:
        st.terminal = kind
        resp = obj.get("response")
        resp = resp if isinstance(resp, dict) else {}
        st.usage = reported_usage(call.meter, resp.get("usage"))
        if kind == "response.failed":
            err = resp.get("error")
            err = err if isinstance(err, dict) else {}
            st.failure = scrub(str(err.get("message") or "The upstream response failed."))
        st.charge = self._stream_charge(call, st, kind != "response.failed")
        if resp.get("usage") is None:
            return raw if raw is not None else sse(kind, obj)
        # usage without valid counts is shown as the estimate that bills the call
        shown = resp["usage"] if st.usage is not None else usage_block(call.meter.usage)
        usage = {**shown, "cost": micros_to_inr(st.charge)}
        return sse(kind, {**obj, "response": {**resp, "usage": usage}})

    def _stream_charge(self, call: ResponsesCall, st: _Native, finished: bool) -> int:
        usage = st.usage or self._estimate(call, st.bytes, st.fragments)
        charge = self._charge(call, usage)
        return charge if finished or st.fragments > 0 else 0

    async def _finish_native(self, call: ResponsesCall, st: _Native, cut: str | None, cut_timeout: bool) -> bytes:
        meter = call.meter
        if meter.client_gone:
            meter.end_state, meter.status = "client_disconnect", 499
        elif cut is not None or st.terminal == "response.failed":
            meter.end_state = "upstream_cut" if st.fragments else "zero_output_error"
            meter.status = 503 if meter.stopping else 504 if cut_timeout else 502
            meter.error = cut or st.failure
        charge = st.charge
        if charge is None:
            charge = self._stream_charge(call, st, meter.end_state == "completed")
        await self._metering.settle(meter, charge)
        if cut is None or meter.client_gone:
            return b""
        code = "service_unavailable" if meter.stopping else "upstream_timeout" if cut_timeout else "upstream_error"
        return sse("error", {"type": "error", "code": code,
                             "message": cut, "param": None, "sequence_number": st.seq + 1})
