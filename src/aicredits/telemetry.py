"""What the gateway tells its operator, behind two small interfaces the services call.

`Metrics` counts (Prometheus, infra/metrics.py) and `Tracing` traces (OpenTelemetry,
infra/tracing.py); wiring/ picks the implementations. The services call them once per event: a
call settled (services/metering.py, the one place requests, tokens and money are counted), a
request answered without a settled call (api/dispatch.py), a rate-limit refusal, a failed upstream attempt
(services/routing.py). Tracing wraps auth, the hold, each upstream attempt and the settle in
spans; without AICREDITS_OTEL_ENDPOINT the no-op below is used and no span object is ever made.

`RequestState` is the one per-request record they share: api/dispatch.py sets it in a context variable
when a request starts; the settle marks it, so a request is counted once, whoever answers it.
docs/operations.md describes what is exported.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Protocol


class RequestState:
    """The request being answered: its route label, whether a call settled in it, its key (and
    the key's account and model allow-list, once authenticated), the model it named, and headers
    every answer to it carries (the key's rate-limit headers)."""
    __slots__ = ("account_id", "allow", "headers", "key_id", "model", "route", "settled")

    def __init__(self, route: str) -> None:
        self.route = route
        self.settled = False
        self.key_id: str | None = None
        self.account_id: int | None = None
        self.allow: tuple[str, ...] | None = None
        self.model = ""
        self.headers: list[tuple[bytes, bytes]] | None = None


CURRENT_REQUEST: ContextVar[RequestState | None] = ContextVar("aicredits_request", default=None)
# Headers for the upstream request of the attempt running now: the trace context, set only when
# AICREDITS_OTEL_PROPAGATE_UPSTREAM is on (providers/http.py adds them). None: nothing is added.
UPSTREAM_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("aicredits_upstream_headers", default=None)


def begin_request(route: str) -> RequestState:
    state = RequestState(route)
    CURRENT_REQUEST.set(state)
    return state


def current_request() -> RequestState | None:
    return CURRENT_REQUEST.get()


class Metrics(Protocol):
    def settled(self, route: str, model: str, provider: str, status: int, cache: str, overhead_seconds: float,
                upstream_seconds: float, input_tokens: int, output_tokens: int, charged_micros: int) -> None:
        """One settled call (whatever its end): its request, latencies, tokens and charge."""

    def answered(self, route: str, status: int) -> None:
        """A request answered without a settled call (refused, invalid, or not billable)."""

    def rate_limited(self, route: str, limits: str) -> None:
        """A call refused by its key's rpm/tpm limits (`limits`: "rpm", "tpm" or "rpm,tpm")."""

    def upstream_failed(self, provider: str, deployment: str, status: int) -> None:
        """An upstream attempt that failed (it may have been retried or fallen back)."""


class Tracing(Protocol):
    def span(self, name: str) -> AbstractContextManager:
        """A child span of the current one (auth, hold, settle)."""

    def attempt(self, operation: str, system: str, model: str, deployment: str) -> AbstractContextManager:
        """The span of one upstream attempt (GenAI attributes: operation, system, request model)."""

    def call_done(self, system: str, model: str, input_tokens: int, output_tokens: int, charged_micros: int,
                  request_id: str) -> None:
        """A settled call's GenAI usage and cost, on the request's span."""


class _NoMetrics:
    def settled(self, route: str, model: str, provider: str, status: int, cache: str, overhead_seconds: float,
                upstream_seconds: float, input_tokens: int, output_tokens: int, charged_micros: int) -> None:
        pass

    def answered(self, route: str, status: int) -> None:
        pass

    def rate_limited(self, route: str, limits: str) -> None:
        pass

    def upstream_failed(self, provider: str, deployment: str, status: int) -> None:
        pass


class _NoTracing:
    """Tracing off: every span is one shared, empty context manager."""
    _none = nullcontext()

    def span(self, name: str) -> AbstractContextManager:
        return self._none

    def attempt(self, operation: str, system: str, model: str, deployment: str) -> AbstractContextManager:
        return self._none

    def call_done(self, system: str, model: str, input_tokens: int, output_tokens: int, charged_micros: int,
                  request_id: str) -> None:
        pass


NO_METRICS: Metrics = _NoMetrics()
NO_TRACING: Tracing = _NoTracing()
