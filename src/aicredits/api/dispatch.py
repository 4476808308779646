"""The raw-ASGI router of the gateway's own routes (/v1, /health, /metrics, ...): a dict lookup
of the path, then the handler, with no framework in between (docs/performance.md). Paths under
/admin/api and /dashboard go to their own ASGI apps (Starlette). Every request ends here: its
body budget and concurrency slot are given back, and one that settled no call is counted (and on
/v1 logged); a failure is answered by api/failures.py's mapping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Protocol

from aicredits.api.admission import Admission
from aicredits.api.failures import failure_answer
from aicredits.api.http import (
    ASGIApp,
    BodyBudget,
    ClientGone,
    Handler,
    Headers,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    send_error,
)
from aicredits.errors import MethodNotAllowed, NotFound, ServiceUnavailable
from aicredits.services.metering import STOPPED_BEFORE_ANSWER
from aicredits.services.rejected import RECORDED_STATUSES, RejectedCalls
from aicredits.telemetry import Metrics, RequestState, begin_request

calls_log = logging.getLogger("aicredits.calls")

Methods = dict[str, Handler]
UNTRACED = frozenset({"/health", "/health/ready", "/metrics"})   # no span for probes and scrapes


class Routes:
    """The route table: exact paths, and paths that end in a parameter (found by their prefix,
    named by their template, e.g. "/v1/models/{model}")."""

    __slots__ = ("exact", "prefixed")

    def __init__(self, exact: dict[str, Methods], prefixed: dict[str, tuple[str, Methods]] | None = None) -> None:
        self.exact = exact
        self.prefixed = prefixed or {}

    def methods(self, path: str) -> Methods | None:
        found = self.exact.get(path)
        return found if found is not None else self.by_prefix(path)

    def by_prefix(self, path: str) -> Methods | None:
        for prefix, (_, methods) in self.prefixed.items():
            if path.startswith(prefix) and len(path) > len(prefix):
                return methods
        return None

    def label(self, path: str) -> str:
        """The `route` label of a request: its route, else one of two words (so a scan of
        made-up paths cannot grow the metrics)."""
        if path in self.exact:
            return path
        for prefix, (template, _) in self.prefixed.items():
            if path.startswith(prefix):
                return template
        if path == "/" or path.startswith("/dashboard"):
            return "/dashboard"
        return "other"

    def documented(self) -> Iterator[tuple[str, Methods]]:
        """(the path as /openapi.json names it, its methods), for every route."""
        yield from self.exact.items()
        yield from self.prefixed.values()


class Dispatcher:
    """The ASGI app of one process's HTTP requests (app.py hands it each one)."""

    def __init__(self, routes: Routes, *, admission: Admission, metrics: Metrics, body_budget: BodyBudget,
                 admin_api: ASGIApp, dashboard: ASGIApp, rejected: RejectedCalls | None = None) -> None:
        self.routes = routes
        self._exact = routes.exact   # looked up first, inline: the hot path's one dict lookup
        self._admission = admission
        self._metrics = metrics
        self._budget = body_budget
        self._admin_api = admin_api
        self._dashboard = dashboard
        self._rejected = rejected   # usage rows of refused calls of known keys (services/rejected.py)
        self.inflight: set[asyncio.Task[None]] = set()   # requests being handled (waited for at shutdown)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["aicredits.started"] = time.perf_counter()
        req = Request(scope, receive, self._budget)
        started = False
        me = asyncio.current_task()
        assert me is not None   # a request runs in its own task
        self.inflight.add(me)
        status = 0
        path = scope["path"]
        state = begin_request(self.routes.label(path))

        error_message: str | None = None

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if not started:
                started = True
                status = message.get("status", 0)
                if state.headers:   # the key's x-ratelimit-* headers, on every answer
                    message = {**message, "headers": [*message.get("headers", ()), *state.headers]}
            await send(message)

        methods: Methods | None = None
        try:
            methods = self._exact.get(path)
            if methods is None:
                methods = self.routes.by_prefix(path)
            if methods is None:
                if path.startswith("/admin/api/") or path == "/admin/api":
                    await self._admin_api(scope, receive, tracking_send)
                    return
                if path.startswith("/dashboard/") or path == "/dashboard":
                    await self._dashboard(scope, receive, tracking_send)
                    return
                raise NotFound(f"Unknown route: {scope['method']} {path}.")
            handler = methods.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {path}; "
                                       f"use {', '.join(methods)}.")
            await handler(req, tracking_send)
        except ClientGone:
            status = status or 499
            return
        except asyncio.CancelledError:
            # only the server cancels a request: it is stopping and its drain time is over
            if started:
                raise
            me.uncancel()
            status = 503
            await send_error(send, ServiceUnavailable(STOPPED_BEFORE_ANSWER, retry_after=1),
                             [(b"x-request-id", req.request_id.encode())])
        except Exception as exc:  # noqa: BLE001 - mapped to its answer (and logged) by failure_answer
            error = failure_answer(exc, scope, req.request_id)
            if not started:
                status, error_message = error.status, error.message
                extra: Headers = [(b"x-request-id", req.request_id.encode()), *(state.headers or ())]
                if isinstance(error, MethodNotAllowed) and methods is not None:
                    extra.append((b"allow", ", ".join(methods).encode()))
                await send_error(send, error, extra)
        finally:
            req.release_body()
            if req.slot is not None:
                await self._admission.release(req.slot)
            self.inflight.discard(me)
            if not state.settled:   # a settled call was counted and logged by its settle
                self._answered(state, req, status)
                if status in RECORDED_STATUSES and state.account_id is not None and self._rejected is not None \
                        and path.startswith("/v1/"):
                    self._rejected.note(request_id=req.request_id, account_id=state.account_id,
                                        key_id=state.key_id, path=path, model=state.model, status=status,
                                        error=error_message, latency_ms=int(
                                            (time.perf_counter() - scope["aicredits.started"]) * 1000))

    def _answered(self, state: RequestState, req: Request, status: int) -> None:
        """Count (and, on /v1, log) a request that settled no call: refused, invalid, not billable."""
        self._metrics.answered(state.route, status)
        path = req.scope["path"]
        if path.startswith("/v1/"):
            calls_log.info("request", extra={"fields": {
                "request_id": req.request_id, "key_id": state.key_id, "route": path, "method": req.scope["method"],
                "status": status, "latency_ms": int((time.perf_counter() - req.scope["aicredits.started"]) * 1000)}})


class RequestTracer(Protocol):
    """infra/tracing.py's OtelTracing: a request answered inside its span."""

    async def serve(self, scope: Scope, receive: Receive, send: Send, handle: ASGIApp, route: str) -> None: ...


def traced(dispatcher: Dispatcher, tracer: RequestTracer) -> ASGIApp:
    """The dispatcher with one span per request (not for probes and scrapes)."""
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in UNTRACED:
            await dispatcher(scope, receive, send)
        else:
            await tracer.serve(scope, receive, send, dispatcher, dispatcher.routes.label(path))
    return serve
