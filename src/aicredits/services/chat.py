"""Chat completions: route -> hold -> call (retries, fallbacks) -> settle -> record, for every
way a call can end (docs/billing.md):

  completed          actual usage
  upstream_error     an error before any output: nothing
  upstream_cut       the stream broke off or ended without its finish: prompt + delivered output
                     (the prompt as the provider reported it where it did, e.g. Anthropic's
                     message_start; else both estimated)
  client_disconnect  the client left mid-stream; the upstream is cancelled at once: prompt + delivered
  zero_output_error  an error finish with no output (a stream's finish_reason "error" too): nothing
  malformed_response a 200 answer the gateway cannot read: 502; the reported usage if valid, else nothing
A stream whose choice finishes with "error" after output is an upstream_cut.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

import orjson

from aicredits.domain.answers import chat_answer_problem
from aicredits.domain.cache_entry import StreamAssembler
from aicredits.domain.catalog import ModelSpec
from aicredits.domain.money import micros_to_inr
from aicredits.domain.pricing import Rates, TokenPrices, TokenUsage, max_prices, token_prices
from aicredits.domain.reservation import HoldPlan, hold_prices, plan_hold
from aicredits.domain.streaming import StreamMeter
from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens, fill_usage, usage_from_openai
from aicredits.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from aicredits.ports import KeyAuth
from aicredits.providers.base import DONE, ChatProvider, ChatResult, ChatStream, StreamEvent, UpstreamCut
from aicredits.services.answers import as_served, reject_malformed, reported_usage, warn_incomplete
from aicredits.services.cache import CachePlan, CacheService, Recalled
from aicredits.services.metering import Meter, Metering, within_limit
from aicredits.services.prompt_bound import chain_bound, prompt_facts
from aicredits.services.routing import Router, Target
from aicredits.services.validation import validate_chat
from aicredits.telemetry import current_request

GATEWAY_FIELDS = ("no_cache", "models")


class ChatService:
    def __init__(self, router: Router, rates: Rates, metering: Metering, *, max_seconds: float = 900.0) -> None:
        self._max_seconds = max_seconds
        self._router = router
        self._rates = rates
        self._metering = metering
        self._prices: dict[str, TokenPrices] = {}
        self.cache: CacheService | None = None     # set by the app when a cache is on

    def prices(self, spec: ModelSpec) -> TokenPrices:
        p = self._prices.get(spec.id)
        if p is None:
            p = self._prices[spec.id] = token_prices(spec, self._rates)
        return p

    # ------------------------------------------------------------------ start
    async def open(self, body: object, auth: KeyAuth, request_id: str, started: float, *,
                   cached: bool = False, raw: bytes | None = None) -> Meter:
        """`cached`: the response caches may answer (POST /v1/chat/completions only); `raw`: the
        request's bytes, remembered with what they were read as (`open_hit`)."""
        body = validate_chat(body)
        chain = self._router.chain(body["model"], "chat", body.get("models"))
        stream = bool(body.get("stream"))
        meter = Meter(request_id, auth, "chat", started, stream=stream)
        meter.model = chain[0].id
        if cached and self.cache is not None and await self._cache_lookup(self.cache, meter, body, raw):
            return meter
        prices = max_prices([self.prices(s) for s in chain]) if len(chain) > 1 else self.prices(chain[0])
        caps = [s.max_output_tokens for s in chain if s.max_output_tokens]
        cap = min(caps) if caps else None
        n = body.get("n") or 1
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        # text bytes, and every image, PDF and audio part by each model's formula (docs/billing.md)
        bound = chain_bound(self._router, chain, await prompt_facts(body))
        held = hold_prices(prices, bound)   # the dearest price tier a prompt this long can reach
        prompt_cost = bound * held.max_input

        def planner(available: int, key_headroom: int | None) -> HoldPlan:
            return plan_hold(available=available, key_headroom=key_headroom, prompt_cost=prompt_cost,
                             output_price=held.output, requested_max=requested, model_cap=cap, n=n)

        await self._metering.hold(meter, planner)
        meter.body = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
        meter.chain = chain
        meter.include_usage = bool(stream and (body.get("stream_options") or {}).get("include_usage"))
        return meter

    @property
    def _cache(self) -> CacheService:
        """The response cache of a call that looked it up (meter.cache_plan set: the cache is on)."""
        if self.cache is None:
            raise RuntimeError("the response cache is off")
        return self.cache

    async def _cache_lookup(self, cache: CacheService, meter: Meter, body: dict, raw: bytes | None) -> bool:
        """Look the request up (services/cache.py); on a hit, hold the hit's charge. True: a hit."""
        plan = cache.plan(body, meter.auth.account_id, meter.auth.key_id, meter.model)
        if plan is None:
            return False
        include_usage = bool(meter.stream and (body.get("stream_options") or {}).get("include_usage"))
        if raw is not None:
            cache.memorise(raw, meter.auth, Recalled(body["model"][:200], meter.model, meter.stream, include_usage,
                                                     plan.eff, plan.key))
        meter.cache_plan = plan
        meter.cache = await cache.lookup(plan)
        if meter.cache != "hit":
            return False
        meter.include_usage = include_usage
        await self.admit_hit(meter)
        return True

    async def open_hit(self, raw: bytes, auth: KeyAuth, request_id: str, started: float) -> Meter | None:
        """An exact hit on request bytes read before (CacheService.recall), found without parsing,
        validating or normalising them again; not yet admitted (`admit_hit`). None: not recalled,
        or not a hit now (the caller reads the request as usual)."""
        cache = self.cache
        if cache is None:
            return None
        recalled = cache.recall(raw, auth)
        if recalled is None:
            return None
        plan = CachePlan(recalled.eff, recalled.model, auth.account_id, recalled.key)
        if not await cache.lookup_exact(plan):
            return None
        state = current_request()
        if state is not None:   # as Router.chain sets it for the access log
            state.model = recalled.asked
        meter = Meter(request_id, auth, "chat", started, stream=recalled.stream)
        meter.model, meter.cache, meter.cache_plan = recalled.model, "hit", plan
        meter.include_usage = recalled.include_usage
        return meter

    def free_hit(self, meter: Meter) -> bool:
        """Whether this hit costs nothing (AICREDITS_CACHE_HIT_PRICE 0, the default)."""
        plan = meter.cache_plan
        return plan is not None and not self._cache.hit_charge(plan)

    async def admit_hit(self, meter: Meter) -> None:
        """A hit's admission: a charged hit holds its charge (rate limits and funds); a free one
        holds nothing, so only the key's rate limits apply."""
        plan = meter.cache_plan
        if plan is None:
            raise RuntimeError("not a cache hit")
        charge = self._cache.hit_charge(plan)
        if charge:
            await self._metering.hold_fixed(meter, charge)
        else:
            await self._metering.admit(meter)

    async def serve_hit(self, meter: Meter) -> bytes:
        """A hit's answer (its JSON, or streamed, its whole SSE stream), recorded with the tokens it
        saved: a charged hit settled like any call; a free one (no money moves) recorded by the
        cache with its next write, within 0.5 s."""
        plan, cache = meter.cache_plan, self._cache
        if plan is None:
            raise RuntimeError("not a cache hit")
        meter.provider, meter.deployment = plan.hit.provider, "cache"
        meter.usage = cache.hit_usage(plan)
        if meter.hold:
            charged = (await self._metering.settle(meter, cache.hit_charge(plan))).charged
        else:
            charged = 0
            cache.record(self._metering.free_call(meter))
        return cache.answer(plan, meter.call_id, charged, meter.stream, meter.include_usage)

    def _remember(self, meter: Meter, data: dict | None, raw: bytes | None, usage: TokenUsage) -> None:
        """A cache miss that completed cleanly is stored for the next asker."""
        if meter.cache == "miss" and meter.end_state == "completed" and meter.settled is not None \
                and meter.cache_plan is not None:
            self._cache.remember(meter.cache_plan, data, raw, served_by=meter.served.spec.id,
                                provider=meter.provider, usage=usage, charge=meter.settled.charged)

    def _upstream_body(self, meter: Meter, target: Target) -> dict:
        plan = meter.plan
        if not isinstance(plan, HoldPlan) or not plan.inject_max_tokens:
            return meter.body
        body = dict(meter.body)
        body.pop("max_tokens", None)              # a client's value above the model's cap is replaced
        body.pop("max_completion_tokens", None)
        body[cast(ChatProvider, target.provider).max_tokens_field] = plan.max_tokens
        return body

    def _cost(self, meter: Meter, usage: TokenUsage) -> int:
        meter.usage = usage
        return min(self.prices(meter.served.spec).cost(usage), meter.hold)

    async def _call(self, meter: Meter) -> ChatResult:
        def call(target: Target) -> Awaitable[ChatResult]:
            provider = cast(ChatProvider, target.provider)   # a chat model's: checked at start-up
            return provider.chat(self._upstream_body(meter, target), target)
        result, _ = await self._metering.route(meter, self._router, meter.chain, call)
        return result

    # ------------------------------------------------------------------ non-streaming
    async def complete(self, meter: Meter, render: Callable[[dict, TokenUsage], bytes] | None = None) -> bytes:
        """The answer's bytes: the provider's (or `render(data, usage)`, e.g. as a Response),
        made before the call is settled, so a failure to make them is never charged."""
        result = await within_limit(self._call(meter), self._max_seconds)
        data = result.data
        usage = reported = reported_usage(meter, data.get("usage"))
        # an unreadable answer is charged its reported usage, if valid, else nothing
        malformed = self._cost(meter, reported) if reported is not None else 0
        problem = chat_answer_problem(data)
        if problem is not None:
            await reject_malformed(self._metering, meter, problem, malformed)
        choices = data["choices"]
        finish = choices[0].get("finish_reason")
        try:
            if usage is None:
                text = orjson.dumps([c.get("message") for c in choices])
                usage = TokenUsage(prompt_tokens=estimate_prompt_tokens(meter.body),
                                   completion_tokens=estimate_text_tokens(len(text)))
            if not (finish == "error" and usage.completion_tokens == 0):
                if render is not None:
                    out = render(data, usage)
                else:
                    out = as_served(data, result.raw, meter.model)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):   # e.g. nested past orjson's limit
            await reject_malformed(self._metering, meter, "the answer cannot be passed on", malformed)
        if finish == "error" and usage.completion_tokens == 0:
            exc = UpstreamError("The upstream finished with an error and no output.")
            meter.usage = usage
            await self._metering.fail(meter, exc, "zero_output_error")
            raise exc
        # a reported usage was priced above (`malformed`): not priced twice
        cost = malformed if usage is reported else self._cost(meter, usage)
        await self._metering.settle(meter, cost)
        if meter.cache == "miss":   # stored with the gateway's model id (as_served changed `data`)
            self._remember(meter, data, out if render is None else None, usage)
        return out

    # ------------------------------------------------------------------ streaming
    async def start_stream(self, meter: Meter) -> ChatStream:
        """Open the upstream stream (retries and fallbacks happen here, before any output)."""
        def call(target: Target) -> Awaitable[ChatStream]:
            provider = cast(ChatProvider, target.provider)   # a chat model's: checked at start-up
            return provider.stream(self._upstream_body(meter, target), target)
        upstream, _ = await self._metering.route(meter, self._router, meter.chain, call)
        return upstream

    def relay(self, meter: Meter, upstream: ChatStream) -> AsyncGenerator[bytes, None]:
        """The client's SSE bytes, batch by batch as the upstream sends them. Settles in
        `finally` whatever ends the stream (a cancelled task included)."""
        return self._metering.relay(meter, upstream, _ChatStream(self, meter, upstream), self._max_seconds)

    def _usage_chunk(self, meter: Meter, obj: dict, sm: StreamMeter, upstream: ChatStream) -> bytes:
        """OpenAI's usage chunk from a chunk carrying usage: same id, model and created,
        `choices: []`, and the usage with its `cost` (INR): what the call is charged if it ends
        here (nothing after an error finish with no output). Usage without valid counts is
        shown as the estimate that bills the call."""
        usage = self._stream_usage(meter, sm, upstream)
        charge = 0 if sm.error_finish and not sm.delivered_output else self._cost(meter, usage)
        shown = obj["usage"] if usage_from_openai(obj["usage"]) is not None else {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}
        obj = dict(obj, choices=[], usage=dict(shown, cost=micros_to_inr(charge)))
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    @staticmethod
    def _stream_usage(meter: Meter, sm: StreamMeter, upstream: ChatStream) -> TokenUsage:
        """A stream's usage: the provider's usage chunk if it arrived with valid counts. Else
        what the provider reported so far (its `partial_usage()`: e.g. Anthropic's prompt and
        cache counts from message_start), with the documented estimator filling in what it did
        not report: the prompt, and the output the gateway relayed."""
        usage = usage_from_openai(sm.usage)
        if usage is not None:
            return usage
        return fill_usage(upstream.partial_usage(), _prompt_estimate(meter),
                          estimate_text_tokens(sm.text_bytes, sm.fragments))

    async def _finish_stream(self, meter: Meter, sm: StreamMeter, cut: str | None, cut_timeout: bool,
                             upstream: ChatStream, pending: dict | None,
                             collect: StreamAssembler | None = None) -> bytes:
        if meter.client_gone:
            meter.end_state, meter.status = "client_disconnect", 499
        elif cut is not None:
            meter.end_state = "upstream_cut" if sm.delivered_output else "zero_output_error"
            meter.status, meter.error = (503 if meter.stopping else 504 if cut_timeout else 502), cut
        if sm.usage is not None and usage_from_openai(sm.usage) is None:
            warn_incomplete(meter, sm.usage)
        usage = self._stream_usage(meter, sm, upstream)
        if meter.end_state != "completed" and not sm.delivered_output:
            meter.usage = usage
            charge = 0
        else:
            charge = self._cost(meter, usage)
        await self._metering.settle(meter, charge)
        if collect is not None and cut is None and not meter.client_gone:
            self._remember(meter, collect.completion(), None, usage)
        if cut is None or meter.client_gone:
            return b""
        head = b""
        if pending is not None and meter.include_usage and meter.end_state == "upstream_cut" \
                and len(sm.finished) >= (meter.body.get("n") or 1):
            # every choice finished with its usage, then the stream broke before [DONE]: the
            # client is shown that usage (it is what was charged), as with OpenAI's usage chunk
            head = self._usage_chunk(meter, pending, sm, upstream)
        err = ServiceUnavailable(cut, retry_after=1) if meter.stopping else \
            (UpstreamTimeout if cut_timeout else UpstreamError)(cut)
        chunk = {"id": sm.id or "chatcmpl-" + meter.call_id, "object": "chat.completion.chunk",
                 "created": sm.created or int(time.time()), "model": meter.model,
                 "error": err.body()["error"],
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
        return head + b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"


def _prompt_estimate(meter: Meter) -> int:
    return meter.estimated_prompt(lambda: estimate_prompt_tokens(meter.body))


class _ChatStream:
    """A chat stream's events for Metering.relay: metered by a StreamMeter, relayed as sent
    except usage, which reaches the client only as OpenAI's usage chunk; [DONE] ends it."""
    __slots__ = ("chat", "collect", "ended", "meter", "pending", "sm", "upstream")

    def __init__(self, chat: ChatService, meter: Meter, upstream: ChatStream) -> None:
        self.chat = chat
        self.meter = meter
        self.upstream = upstream
        self.sm = StreamMeter()
        self.pending: dict | None = None    # a chunk whose usage (on a chunk with choices) the client is yet to be shown
        self.ended = False
        self.collect = StreamAssembler() if meter.cache == "miss" else None   # for the response cache

    def batch(self, batch: list) -> bytes:
        chat, meter, sm = self.chat, self.meter, self.sm
        out = []
        for ev in batch:
            obj = ev.data
            if obj is DONE:
                sm.done = True
                if self.pending is not None and meter.include_usage:
                    out.append(chat._usage_chunk(meter, self.pending, sm, self.upstream))
                    self.pending = None
                if not sm.error_finish:   # else the error event comes first, then [DONE] (finish)
                    out.append(b"data: [DONE]\n\n")
                break
            if obj is None:
                if ev.raw is not None:
                    out.append(ev.raw)
                continue
            try:
                if obj.get("model", meter.model) != meter.model:   # the gateway's id (services/answers.py)
                    obj["model"] = meter.model
                    ev = StreamEvent(obj)
                sm.observe(obj)
                if self.collect is not None:
                    self.collect.observe(obj)
            except (AttributeError, TypeError, ValueError) as exc:
                raise UpstreamCut("The upstream sent a malformed stream event.") from exc
            if sm.error is not None:
                break
            if obj.get("usage") is not None:
                # usage (the StreamMeter has it for billing) reaches the client only as
                # OpenAI's own usage chunk (choices: [], with our `cost`), and only when
                # the client asked for it
                if obj.get("choices"):
                    # on a chunk with choices (Gemini: on the finish chunk; some servers on
                    # every chunk, as a running total): the chunk goes on without it, and
                    # the last total follows as its own chunk just before [DONE], unless
                    # the upstream's own usage chunk comes: the client sees one usage chunk
                    out.append(b"data: " + orjson.dumps({k: v for k, v in obj.items() if k != "usage"})
                               + b"\n\n")
                    self.pending = obj
                    continue
                self.pending = None
                if meter.include_usage:
                    out.append(chat._usage_chunk(meter, obj, sm, self.upstream))
                continue
            out.append(ev.raw if ev.raw is not None else b"data: " + orjson.dumps(obj) + b"\n\n")
        self.ended = sm.done or sm.error is not None
        return b"".join(out)

    def cut(self) -> str | None:
        sm = self.sm
        if sm.error is not None:
            return str(sm.error.get("message") or "The upstream reported an error mid-stream.")
        if sm.error_finish:
            return "The upstream finished with an error."
        return None if sm.complete else "The upstream stream ended before it finished."

    def finish(self, cut: str | None, timeout: bool) -> Awaitable[bytes]:
        return self.chat._finish_stream(self.meter, self.sm, cut, timeout, self.upstream, self.pending,
                                        self.collect)

    def accrued(self) -> int:
        """The charge of a cut now: prompt + delivered output (nothing while none was delivered)."""
        if not self.sm.delivered_output:
            return 0
        return self.chat._cost(self.meter, self.chat._stream_usage(self.meter, self.sm, self.upstream))
