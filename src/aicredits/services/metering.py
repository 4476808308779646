"""One billable call's money: its hold before, its settlement after, its usage record.

Every endpoint uses a Meter, so nothing reaches an upstream without a hold and every hold is
settled (the settle runs shielded from cancellation; the sweeper catches a crashed process).
A streamed call runs through `Metering.relay`, whatever the endpoint's events are.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aicredits.domain.pricing import TokenUsage
from aicredits.domain.ratelimit import refusal_message
from aicredits.domain.reservation import plan_fixed_hold
from aicredits.errors import GatewayError, InternalError, InvalidRequest, RateLimited, UpstreamTimeout
from aicredits.ports import KeyAuth, RateLimiter, Settlement, SettleResult
from aicredits.providers.base import UpstreamCut
from aicredits.services.billing import Billing

log = logging.getLogger("aicredits.calls")
T = TypeVar("T")
# the message a call's task is cancelled with when its client disconnects before the answer
CLIENT_GONE = "client disconnected"


@dataclass
class Meter:
    request_id: str
    auth: KeyAuth
    endpoint: str
    started: float
    stream: bool = False
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    hold: int = 0
    plan: Any = None
    model: str = ""
    provider: str = ""
    deployment: str = ""
    upstream_seconds: float = 0.0
    status: int = 200
    end_state: str = "completed"
    error: str | None = None
    cache: str = "bypass"
    client_gone: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage)
    units: int = 0
    settled: SettleResult | None = None
    body: Any = None            # what goes upstream (gateway-only fields removed)
    chain: list = field(default_factory=list)   # candidate models, first = requested
    target: Any = None          # the routing Target that answered
    include_usage: bool = False

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)

    def served_by(self, target) -> None:
        self.model = target.spec.id
        self.provider = target.spec.provider
        self.deployment = target.name


@dataclass(frozen=True)
class FixedHold:
    amount: int


class StreamHandler(Protocol):
    """One endpoint's side of a streamed call, for `Metering.relay`: its events, how they end,
    what it charges."""
    ended: bool     # the stream's end (its finish, or an error) has come: read no further

    def batch(self, batch: list) -> bytes:
        """The client's bytes for one batch of upstream events (b"" for none)."""

    def cut(self) -> str | None:
        """Once the events stop: why the stream counts as cut, or None when it finished."""

    def finish(self, cut: str | None, timeout: bool) -> Awaitable[bytes]:
        """Settle the call (run shielded); the client's last bytes (an error event, or b"")."""


def too_long(max_seconds: float) -> str:
    return f"The call ran longer than the gateway's limit of {max_seconds:g} s."


async def within_limit(aw: Awaitable[T], max_seconds: float) -> T:
    """A whole upstream call, or a 504 (UpstreamTimeout) once it runs past the gateway's limit."""
    try:
        async with asyncio.timeout(max_seconds):
            return await aw
    except TimeoutError:
        raise UpstreamTimeout(too_long(max_seconds)) from None


def capability(target, name: str):
    """The provider method serving this endpoint, or a 400 naming the model."""
    fn = getattr(target.provider, name, None)
    if fn is None:
        raise InvalidRequest(f"The provider of '{target.spec.id}' does not serve this endpoint.", param="model")
    return fn


class Metering:
    def __init__(self, billing: Billing, limiter: RateLimiter, rate_window_seconds: float = 60.0) -> None:
        self.billing = billing
        self.limiter = limiter
        self._window_ms = max(1, round(rate_window_seconds * 1000))

    async def hold(self, meter: Meter, planner: Callable[[int, int | None], Any]) -> Any:
        """Admit the call under its key's rate limits (429), then reserve its worst case (402 with
        what would fit). Every billable endpoint passes here, so no route skips either."""
        auth = meter.auth
        if auth.rpm is not None or auth.tpm is not None:   # unlimited keys never reach the limiter
            refused = await self.limiter.admit(auth.key_id, auth.rpm, auth.tpm)
            if refused is not None:
                raise RateLimited(refusal_message(refused, self._window_ms), retry_after=refused.retry_after)
        plan = await self.billing.reserve(meter.call_id, meter.auth, planner)
        meter.plan = plan
        meter.hold = plan.amount
        return plan

    async def hold_fixed(self, meter: Meter, worst: int) -> int:
        """Reserve a known worst case (images, speech, audio, embeddings)."""
        await self.hold(meter, lambda avail, key: FixedHold(plan_fixed_hold(available=avail, key_headroom=key,
                                                                            cost=worst)))
        return meter.hold

    async def route(self, meter: Meter, router, chain: list, call: Callable[[Any], Awaitable[T]]) -> tuple[T, Any]:
        """Run `call(target)` through the router's retries and fallbacks; if every attempt
        fails, the hold is released (nothing charged) and the error raised."""
        async def attempt(target):
            meter.served_by(target)
            return await self.upstream(meter, call(target))
        try:
            result, meter.target = await router.run(chain, attempt)
        except GatewayError as exc:
            await self.fail(meter, exc)
            raise
        except asyncio.CancelledError as exc:
            if CLIENT_GONE not in exc.args:
                await self.fail(meter, InternalError("The call failed inside the gateway."), "gateway_error")
                raise
            # the client left before the answer (api/http.py cancelled the call): the upstream
            # request is already closed; nothing was delivered, so nothing is charged
            meter.client_gone = True
            meter.status, meter.end_state = 499, "client_disconnect"
            await self.settle(meter, 0)
            raise
        except BaseException:
            await self.fail(meter, InternalError("The call failed inside the gateway."), "gateway_error")
            raise
        return result, meter.target

    async def upstream(self, meter: Meter, aw: Awaitable[T]) -> T:
        """Await upstream work, counting its time out of the gateway's overhead."""
        t = time.perf_counter()
        try:
            return await aw
        finally:
            meter.upstream_seconds += time.perf_counter() - t

    async def relay(self, meter: Meter, upstream, handler: StreamHandler, max_seconds: float) -> AsyncIterator[bytes]:
        """The client's bytes, batch by batch as the upstream sends them (`handler` turns each
        batch into bytes). Time spent waiting on the upstream is counted out of the overhead;
        a call past `max_seconds` is cut (504). Settles in `finally` whatever ends the stream
        (a cancelled task included), shielded from cancellation."""
        cut: str | None = None
        cut_timeout = False
        deadline = meter.started + max_seconds
        batches = upstream.batches().__aiter__()
        try:
            while True:
                t = time.perf_counter()
                try:
                    batch = await batches.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    now = time.perf_counter()
                    meter.upstream_seconds += now - t
                if now > deadline:
                    raise UpstreamCut(too_long(max_seconds), timeout=True)
                out = handler.batch(batch)
                if out:
                    yield out
                if handler.ended:
                    break
            cut = handler.cut()
        except UpstreamCut as exc:
            cut, cut_timeout = str(exc), exc.timeout
        except asyncio.CancelledError:
            if not meter.client_gone:
                cut = "The gateway stopped during the call."
                raise
        finally:
            await upstream.aclose()
            tail = await self.billing.shielded(handler.finish(cut, cut_timeout))
        if tail:
            yield tail

    async def settle(self, meter: Meter, charge: int) -> SettleResult:
        """Charge (at most the hold), release the rest, record the call. Never cancelled."""
        return await self.billing.shielded(self._settle(meter, min(max(charge, 0), meter.hold)))

    async def fail(self, meter: Meter, exc, end_state: str = "upstream_error") -> SettleResult:
        meter.status, meter.error, meter.end_state = exc.status, exc.message, end_state
        return await self.settle(meter, 0)

    async def _settle(self, meter: Meter, charge: int) -> SettleResult:
        u = meter.usage
        latency = int((time.perf_counter() - meter.started) * 1000)
        overhead = int(meter.overhead_ms())
        row = {
            "call_id": meter.call_id, "request_id": meter.request_id, "account_id": meter.auth.account_id,
            "key_id": meter.auth.key_id, "model": meter.model, "provider": meter.provider,
            "deployment": meter.deployment, "endpoint": meter.endpoint, "stream": meter.stream,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens,
            "cache_write_1h_tokens": u.cache_write_1h_tokens, "reasoning_tokens": u.reasoning_tokens,
            "units": meter.units or (u.prompt_tokens + u.completion_tokens), "latency_ms": latency,
            "overhead_ms": overhead, "status": meter.status, "cache": meter.cache, "end_state": meter.end_state,
            "error": meter.error, "created_at": int(time.time() * 1000),
        }
        meter.settled = await self.billing.settle(Settlement(
            meter.call_id, meter.auth.account_id, meter.auth.key_id, charge, row, note=meter.model))
        tokens = u.prompt_tokens + u.completion_tokens
        if meter.auth.tpm is not None and meter.settled.charged and tokens:
            await self.limiter.add_tokens(meter.auth.key_id, tokens)   # the key's tpm window
        log.info("call", extra={"fields": {
            "request_id": meter.request_id, "endpoint": meter.endpoint, "model": meter.model,
            "deployment": meter.deployment, "status": meter.status, "end": meter.end_state, "stream": meter.stream,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "units": row["units"],
            "cost_micros": meter.settled.charged, "latency_ms": latency, "overhead_ms": overhead}})
        return meter.settled
