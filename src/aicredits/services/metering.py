"""One billable call's money: its hold before, its settlement after, its usage record.

Every endpoint uses a Meter, so nothing reaches an upstream without a hold and every hold is
settled (the settle runs shielded from cancellation; the sweeper catches a crashed process).
A streamed call runs through `Metering.relay`, whatever the endpoint's events are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from os import urandom
from typing import Any, Protocol, TypeVar

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.ledger import SWEPT
from aicredits.domain.pricing import TokenUsage
from aicredits.domain.ratelimit import refusal_message
from aicredits.domain.reservation import plan_fixed_hold
from aicredits.domain.usage import usage_row
from aicredits.errors import GatewayError, InternalError, RateLimited, ServiceUnavailable, UpstreamTimeout
from aicredits.ports import KeyAuth, Plan, RateLimiter, Settlement, SettleResult
from aicredits.providers.base import ChatStream, UpstreamCut
from aicredits.services.billing import Billing
from aicredits.services.cache import CachePlan
from aicredits.services.routing import Router, Target
from aicredits.telemetry import NO_METRICS, NO_TRACING, Metrics, Tracing, current_request

log = logging.getLogger("aicredits.calls")
T = TypeVar("T")
_P = TypeVar("_P", bound=Plan)
# the message a call's task is cancelled with when its client disconnects before the answer
CLIENT_GONE = "client disconnected"
# why a stream still open when the server's drain time (AICREDITS_DRAIN_SECONDS) is up was cut
STOPPED = "The gateway is restarting: the stream was cut at the end of its drain time. Retry the call."
STOPPED_BEFORE_ANSWER = ("The gateway is restarting and stopped the call before its answer, at the end of its "
                         "drain time; nothing was charged. Retry the call.")


@dataclass
class Meter:
    request_id: str
    auth: KeyAuth
    endpoint: str
    started: float
    stream: bool = False
    call_id: str = field(default_factory=lambda: urandom(16).hex())   # 128 random bits, as hex
    hold: int = 0
    plan: Plan | None = None    # what the hold holds (domain/reservation.py's HoldPlan for token-priced calls)
    model: str = ""
    provider: str = ""
    deployment: str = ""
    upstream_seconds: float = 0.0
    status: int = 200
    end_state: str = "completed"
    error: str | None = None
    cache: str = "bypass"
    cache_plan: CachePlan | None = None     # when the response cache looked the request up
    client_gone: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage)
    units: int = 0
    settled: SettleResult | None = None
    body: dict[str, Any] = field(default_factory=dict)   # what goes upstream (gateway-only fields removed)
    chain: list[ModelSpec] = field(default_factory=list)   # candidate models, first = requested
    target: Target | None = None    # the routing target that answered
    include_usage: bool = False
    prompt_estimate: int | None = None   # the estimator's prompt tokens, once computed (see `estimated_prompt`)
    stopping: bool = False      # the server cut this stream at the end of its drain time (`stop`)
    watch: _Deadline | None = None  # the stream's deadline while `Metering.relay` runs it

    def stop(self) -> bool:
        """The server is stopping: cut this call's stream now (the relay ends it with the cut event
        and settles it). False when no stream of this call is relaying."""
        if self.watch is None:
            return False
        self.stopping = True
        self.watch.expire()
        return True

    @property
    def served(self) -> Target:
        """The routing target that answered (a call past its routing has one)."""
        if self.target is None:
            raise RuntimeError("the call has not reached a provider")
        return self.target

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)

    def estimated_prompt(self, estimate: Callable[[], int]) -> int:
        """The estimator's prompt tokens, computed once: a stream's lease asks for its accrued charge
        every few seconds, and the prompt does not change."""
        if self.prompt_estimate is None:
            self.prompt_estimate = estimate()
        return self.prompt_estimate

    def served_by(self, target: Target) -> None:
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

    def accrued(self) -> int:
        """What the call would be charged if it were cut now (its end-state rule for a cut:
        prompt + delivered output, 0 while nothing was delivered), capped at the hold; it may
        set meter.usage to the usage that charge is for. Recorded with the hold's lease, so the
        sweeper charges it if this process dies."""


def too_long(max_seconds: float) -> str:
    return f"The call ran longer than the gateway's limit of {max_seconds:g} s."


async def within_limit(aw: Awaitable[T], max_seconds: float) -> T:
    """A whole upstream call, or a 504 (UpstreamTimeout) once it runs past the gateway's limit."""
    try:
        async with asyncio.timeout(max_seconds):
            return await aw
    except TimeoutError:
        raise UpstreamTimeout(too_long(max_seconds)) from None


class _Deadline:
    """A stream's deadline: one timer per stream (not a timeout context per batch, which costs
    microseconds on every chunk). When it fires while the relay waits for the upstream, it cancels
    that wait; otherwise the next wait does not start."""
    __slots__ = ("expired", "fired", "handle", "waiting")

    def __init__(self, seconds: float) -> None:
        self.expired = self.fired = False
        self.waiting: asyncio.Task | None = None
        self.handle = asyncio.get_running_loop().call_later(max(0.0, seconds), self.expire)

    def expire(self) -> None:
        self.expired = True
        if self.waiting is not None:
            self.fired = True
            self.waiting.cancel()

    def caught(self, task: asyncio.Task) -> bool:
        """Whether a cancellation out of the wait is this deadline's alone (then it is cleared)."""
        if not self.fired:
            return False
        self.fired = False
        return task.uncancel() == 0


def remaining(meter: Meter, max_seconds: float) -> float:
    """Seconds left before the call passes the gateway's limit (counted from the request's start)."""
    return meter.started + max_seconds - time.perf_counter()


# gen_ai.operation.name of each endpoint's upstream call (the GenAI semantic conventions)
OPERATIONS = {"chat": "chat", "responses": "chat", "embeddings": "embeddings"}


class Metering:
    def __init__(self, billing: Billing, limiter: RateLimiter, rate_window_seconds: float = 60.0, *,
                 max_seconds: float = 900.0, metrics: Metrics = NO_METRICS, tracing: Tracing = NO_TRACING) -> None:
        self.billing = billing
        self.limiter = limiter
        self._window_ms = max(1, round(rate_window_seconds * 1000))
        self.max_seconds = max_seconds
        self.metrics = metrics     # counted once per call, when it settles (telemetry.py)
        self.tracing = tracing

    async def hold(self, meter: Meter, planner: Callable[[int, int | None], _P]) -> _P:
        """Admit the call under its key's rate limits (429), then reserve its worst case (402 with
        what would fit). Every billable endpoint passes here, so no route skips either."""
        with self.tracing.span("hold"):
            return await self._hold(meter, planner)

    async def _hold(self, meter: Meter, planner: Callable[[int, int | None], _P]) -> _P:
        await self.admit(meter)
        plan = await self.billing.reserve(meter.call_id, meter.auth, planner)
        meter.plan = plan
        meter.hold = plan.amount
        self.billing.track(meter.call_id, lambda: 0, lambda: self._row(meter, lost=True))
        return plan

    async def admit(self, meter: Meter) -> None:
        """The key's rate limits (429). Alone only for a call that costs nothing and holds nothing
        (a free cache hit, services/cache.py)."""
        auth = meter.auth
        if auth.key_id is not None and (auth.rpm is not None or auth.tpm is not None):   # unlimited keys never reach the limiter
            refused, limits = await self.limiter.check(auth.key_id, auth.rpm, auth.tpm)
            state = current_request()
            if state is not None and limits is not None:   # x-ratelimit-* on its answer, whatever it is
                state.headers = limits.headers()
            if refused is not None:
                self.metrics.rate_limited(_route(meter), ",".join(name for name, _ in refused.limits))
                raise RateLimited(refusal_message(refused, self._window_ms), retry_after=refused.retry_after)

    async def show_limits(self, auth: KeyAuth) -> None:
        """The x-ratelimit-* headers on an answer that is not limited itself (/v1/models,
        /v1/credits): the key's limits as they stand, nothing counted."""
        if auth.key_id is None or (auth.rpm is None and auth.tpm is None):
            return
        limits = await self.limiter.peek(auth.key_id, auth.rpm, auth.tpm)
        state = current_request()
        if state is not None and limits is not None:
            state.headers = limits.headers()

    def free_call(self, meter: Meter) -> dict:
        """The usage record of a call that costs nothing and held nothing (a free cache hit),
        counted and logged like any call; the caller writes it."""
        row = dict(self._row(meter), cost=0, hold=0)
        settled = meter.settled = SettleResult(0, None, None)
        u = meter.usage
        self._count(meter, u, settled)
        self._log_call(meter, row, settled)
        return row

    async def hold_fixed(self, meter: Meter, worst: int) -> int:
        """Reserve a known worst case (images, speech, audio, embeddings)."""
        await self.hold(meter, lambda avail, key: FixedHold(plan_fixed_hold(available=avail, key_headroom=key,
                                                                            cost=worst)))
        return meter.hold

    async def route(self, meter: Meter, router: Router, chain: list[ModelSpec],
                    call: Callable[[Target], Awaitable[T]]) -> tuple[T, Target]:
        """Run `call(target)` through the router's retries and fallbacks, within the gateway's
        limit of `max_seconds` from the request's start (a timer: past it the call is cancelled,
        504); if every attempt fails, the hold is released (nothing charged) and the error raised."""
        async def attempt(target: Target) -> T:
            meter.served_by(target)
            with self.tracing.attempt(OPERATIONS.get(meter.endpoint, meter.endpoint), target.spec.provider,
                                      target.upstream_id, target.name):
                return await self.upstream(meter, call(target))
        deadline = asyncio.timeout(remaining(meter, self.max_seconds))
        try:
            async with deadline:
                result, target = await router.run(chain, attempt)
                meter.target = target
        except TimeoutError:
            if not deadline.expired():   # not ours: an unexpected error inside the gateway
                await self.fail(meter, InternalError("The call failed inside the gateway."), "gateway_error")
                raise
            exc = UpstreamTimeout(too_long(self.max_seconds))
            await self.fail(meter, exc)
            raise exc from None
        except GatewayError as exc:
            await self.fail(meter, exc)
            raise
        except asyncio.CancelledError as exc:
            if CLIENT_GONE not in exc.args:   # the server stopping (its drain time over): 503
                await self.fail(meter, ServiceUnavailable(STOPPED_BEFORE_ANSWER, retry_after=1),
                                "gateway_error")
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
        return result, target

    async def upstream(self, meter: Meter, aw: Awaitable[T]) -> T:
        """Await upstream work, counting its time out of the gateway's overhead."""
        t = time.perf_counter()
        try:
            return await aw
        finally:
            meter.upstream_seconds += time.perf_counter() - t

    async def relay(self, meter: Meter, upstream: ChatStream, handler: StreamHandler,
                    max_seconds: float) -> AsyncGenerator[bytes, None]:
        """The client's bytes, batch by batch as the upstream sends them (`handler` turns each
        batch into bytes). Time spent waiting on the upstream is counted out of the overhead.
        A timer cuts the call at `max_seconds` from the request's start (504), whether or not
        a chunk is arriving. While it runs, the hold's lease records what the stream has
        accrued. Settles in `finally` whatever ends the stream (a cancelled task included),
        shielded from cancellation."""
        cut: str | None = None
        cut_timeout = False
        batches = upstream.batches().__aiter__()
        self.billing.track(meter.call_id, handler.accrued, lambda: self._row(meter, lost=True))
        meter.watch = watch = _Deadline(remaining(meter, max_seconds))

        def deadline_cut() -> UpstreamCut:   # the call's limit, or the server's drain time (meter.stop)
            return UpstreamCut(STOPPED) if meter.stopping else UpstreamCut(too_long(max_seconds), timeout=True)
        try:
            while True:
                if watch.expired:
                    raise deadline_cut()
                t = time.perf_counter()
                watch.waiting = task = asyncio.current_task()
                try:
                    batch = await batches.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if task is not None and watch.caught(task):
                        raise deadline_cut() from None
                    raise
                finally:
                    watch.waiting = None
                    meter.upstream_seconds += time.perf_counter() - t
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
            watch.handle.cancel()
            meter.watch = None
            await upstream.aclose()
            tail = await self.billing.shielded(handler.finish(cut, cut_timeout))
        if tail:
            yield tail

    async def settle(self, meter: Meter, charge: int) -> SettleResult:
        """Charge (at most the hold), release the rest, record the call. Never cancelled."""
        with self.tracing.span("settle"):
            quota = self.billing.quota
            if (quota is not None and not quota.settle_before_answer and meter.auth.tpm is None
                    and quota.has(meter.call_id)):
                # a slice's call settles in memory (services/quota.py) without ever suspending, so
                # nothing can cancel it half-way: no task and shield needed
                return await self._settle(meter, min(max(charge, 0), meter.hold))
            return await self.billing.shielded(self._settle(meter, min(max(charge, 0), meter.hold)))

    async def fail(self, meter: Meter, exc: GatewayError, end_state: str = "upstream_error") -> SettleResult:
        meter.status, meter.error, meter.end_state = exc.status, exc.message, end_state
        return await self.settle(meter, 0)

    @staticmethod
    def _row(meter: Meter, *, lost: bool = False) -> dict:
        """The call's usage_records row (without cost and hold, which the store fills in). `lost`:
        the row its lease records as progress, written by the sweeper if this process dies."""
        return usage_row(
            meter.call_id, meter.auth.account_id, meter.auth.key_id, int(time.time() * 1000), usage=meter.usage,
            request_id=meter.request_id, model=meter.model, provider=meter.provider, deployment=meter.deployment,
            endpoint=meter.endpoint, stream=meter.stream, units=meter.units, cache=meter.cache,
            latency_ms=int((time.perf_counter() - meter.started) * 1000), overhead_ms=int(meter.overhead_ms()),
            status=502 if lost else meter.status, end_state=SWEPT if lost else meter.end_state,
            error=None if lost else meter.error)

    async def _settle(self, meter: Meter, charge: int) -> SettleResult:
        u = meter.usage
        row = self._row(meter)
        settled = meter.settled = await self.billing.settle(Settlement(
            meter.call_id, meter.auth.account_id, meter.auth.key_id, charge, row, note=meter.model))
        tokens = u.prompt_tokens + u.completion_tokens
        if meter.auth.key_id is not None and meter.auth.tpm is not None and settled.charged and tokens:
            await self.limiter.add_tokens(meter.auth.key_id, tokens)   # the key's tpm window
        self._count(meter, u, settled)
        self._log_call(meter, row, settled)
        return settled

    @staticmethod
    def _log_call(meter: Meter, row: dict, settled: SettleResult) -> None:
        """The one log line of a settled call (docs/operations.md, "Logs")."""
        u = meter.usage
        log.info("call", extra={"fields": {
            "request_id": meter.request_id, "key_id": meter.auth.key_id, "endpoint": meter.endpoint,
            "model": meter.model, "cache": meter.cache,
            "deployment": meter.deployment, "status": meter.status, "end": meter.end_state, "stream": meter.stream,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "units": row["units"],
            "cost_micros": settled.charged, "latency_ms": row["latency_ms"],
            "overhead_ms": row["overhead_ms"], "pending": settled.pending}})

    def _count(self, meter: Meter, u: TokenUsage, settled: SettleResult) -> None:
        """The call's metrics and its span's usage, once, as it settles."""
        state = current_request()
        if state is not None:
            state.settled = True
        charged = settled.charged
        self.metrics.settled(state.route if state is not None else meter.endpoint, meter.model, meter.provider,
                             meter.status, meter.cache, meter.overhead_ms() / 1000, meter.upstream_seconds,
                             u.prompt_tokens, u.completion_tokens, charged)
        self.tracing.call_done(meter.provider, meter.model, u.prompt_tokens, u.completion_tokens, charged,
                               meter.request_id)


def _route(meter: Meter) -> str:
    state = current_request()
    return state.route if state is not None else meter.endpoint
