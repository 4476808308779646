"""Composition root: Settings -> stores -> services -> the ASGI app (with its lifespan)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

from aicredits import logs
from aicredits.api import audio, embeddings, images, meta, responses, webhooks
from aicredits.api import chat as chat_routes
from aicredits.api import metrics as metrics_route
from aicredits.api.chat import STOP_GRACE_SECONDS
from aicredits.api.http import BodyBudget, ClientGone, Request, send_bytes, send_error
from aicredits.api.openapi import document as openapi_document
from aicredits.catalog import builtin_entries, load_catalog
from aicredits.domain.pricing import Rates
from aicredits.errors import GatewayError, InternalError, MethodNotAllowed, NotFound, ServiceUnavailable
from aicredits.infra.journal import FileJournal
from aicredits.ports import StoreUnavailable
from aicredits.providers.http import make_session
from aicredits.providers.payments import build_payment_providers
from aicredits.providers.registry import build_providers
from aicredits.services.audio import AudioService
from aicredits.services.billing import Billing, database_unavailable
from aicredits.services.chat import ChatService
from aicredits.services.concurrency import KeyConcurrency
from aicredits.services.embeddings import EmbeddingsService
from aicredits.services.images import ImagesService
from aicredits.services.keys import KeyAuthenticator
from aicredits.services.metering import STOPPED_BEFORE_ANSWER, Metering
from aicredits.services.payments import PaymentsService
from aicredits.services.responses import ResponsesService
from aicredits.services.routing import RoutePolicy, Router
from aicredits.services.runtime import Runtime
from aicredits.settings import Settings, load_settings
from aicredits.store.db import dialect_of, make_engine, postgres_dsn, sqlite_file
from aicredits.telemetry import NO_TRACING, RequestState, begin_request

log = logging.getLogger("aicredits")
calls_log = logging.getLogger("aicredits.calls")


async def send_redirect(send, location: str) -> None:
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def openapi(gw, req: Request, send) -> None:
    await send_bytes(send, 200, openapi_document(), [])


async def root(gw, req: Request, send) -> None:
    """GET /: the dashboard's front page."""
    if gw.web is None:
        raise NotFound("Unknown route: GET /.")
    await send_redirect(send, "/dashboard/")


# every route here has its operation in api/openapi.py (tests/api/test_openapi.py checks)
ROUTES = {
    "/": {"GET": root},
    "/v1/chat/completions": {"POST": chat_routes.chat_completions},
    "/v1/responses": {"POST": responses.responses},
    "/v1/embeddings": {"POST": embeddings.embeddings},
    "/v1/images/generations": {"POST": images.images_generations},
    "/v1/audio/speech": {"POST": audio.speech},
    "/v1/audio/transcriptions": {"POST": audio.transcriptions},
    "/v1/credits": {"GET": meta.v1_credits},
    "/v1/models": {"GET": meta.v1_models},
    "/api/models": {"GET": meta.api_models},
    "/health": {"GET": meta.health},
    "/health/ready": {"GET": meta.ready},
    "/openapi.json": {"GET": openapi},
    "/webhooks/razorpay": {"POST": webhooks.razorpay},
    "/metrics": {"GET": metrics_route.metrics},
}
UNTRACED = frozenset({"/health", "/health/ready", "/metrics"})   # no span for probes and scrapes


def route_of(path: str) -> str:
    """The `route` label of a request: its path when it is a route, else one of two words (so a
    scan of made-up paths cannot grow the metrics)."""
    if path in ROUTES:
        return path
    if path == "/" or path.startswith("/dashboard"):
        return "/dashboard"
    return "other"


async def open_billing_store(settings: Settings):
    if dialect_of(settings.database_url) == "sqlite":
        from aicredits.store.billing_sqlite import SqliteBilling
        return SqliteBilling(sqlite_file(settings.database_url))
    from aicredits.store.billing_pg import PostgresBilling
    return await PostgresBilling.connect(postgres_dsn(settings.database_url), timeout=settings.db_timeout)


class Gateway:
    """The ASGI application."""

    def __init__(self, settings: Settings, metrics_dir: str | None = None) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir   # prometheus-client's multi-process directory (serve --workers N)
        self.metrics = None              # infra/metrics.py, from startup()
        self.tracing = NO_TRACING        # infra/tracing.py when AICREDITS_OTEL_ENDPOINT is set
        self._tracer = None
        self.catalog = load_catalog(settings.extra_models)
        self.rates = Rates(settings.usd_inr_fraction, settings.markup_fraction)
        self.redis = None
        self._tasks: list[asyncio.Task] = []
        self._session = None
        self.web = None          # the dashboard (web/), reached only by /dashboard paths
        self.web_context = None  # its services (web.app.WebContext)
        self.admin_api = None    # /admin/api (api/admin_api.py), admin API keys only
        self._web_engine = None
        self.cache = None        # the response caches (services/cache.py), None when off
        self._cache_engine = None
        self.payments = None     # top-ups (services/payments.py): the wallet pages and /webhooks/razorpay
        self.body_budget = BodyBudget(settings.body_bytes_in_flight)
        self._inflight: set[asyncio.Task] = set()   # requests being handled (waited for at shutdown)

    def _rate_limiter(self):
        """Per-key rpm/tpm counters: in Redis when configured (shared by every process), else in
        this process's memory."""
        s = self.settings
        if s.redis_url:
            import redis.asyncio as aioredis

            from aicredits.infra.ratelimit_redis import RedisRateLimiter
            self.redis = aioredis.from_url(s.redis_url, socket_timeout=s.redis_timeout,
                                           socket_connect_timeout=s.redis_timeout)
            return RedisRateLimiter(self.redis, s.redis_prefix, s.rate_window_seconds)
        from aicredits.infra.ratelimit_memory import MemoryRateLimiter
        return MemoryRateLimiter(s.rate_window_seconds)

    def _in_flight(self):
        """Per-key requests in flight: in Redis when configured (one cap across every process),
        else in this process's memory. Called after _rate_limiter(), which connects Redis."""
        if self.redis is not None:
            from aicredits.infra.inflight_redis import RedisInFlight
            s = self.settings
            # a slot outlives the longest request (its body, then its call) by a minute
            return RedisInFlight(self.redis, s.redis_prefix, s.body_timeout + s.max_request_seconds + 60)
        from aicredits.infra.inflight_memory import MemoryInFlight
        return MemoryInFlight()

    async def admit(self, req: Request):
        """The key of a billable call (401 unless valid), within its concurrency cap (429): before
        the body is read. The slot is given back when the request ends (handle)."""
        auth = await self.keys.authenticate(req.authorization())
        req.slot = await self.concurrency.enter(auth)
        return auth

    async def startup(self) -> None:
        s = self.settings
        self._observe()
        store = await open_billing_store(s)
        self._session = make_session(s.upstream_connect_timeout)
        providers = build_providers(s, self._session, self.catalog)
        self.billing = Billing(store, lease_seconds=s.hold_lease_seconds,
                               journal=FileJournal(s.journal_dir), settle_retry_seconds=s.settle_retry_seconds,
                               max_call_seconds=s.max_request_seconds)
        self.keys = KeyAuthenticator(store, s.key_cache_seconds, tracing=self.tracing)
        self.billing.on_revoked = self.keys.forget
        self.router = Router(self.catalog, providers, RoutePolicy(
            s.retries, s.retry_base_delay, s.retry_max_delay, s.breaker_failures, s.breaker_cooldown,
            deadline=s.upstream_timeout), metrics=self.metrics)
        self.metering = Metering(self.billing, self._rate_limiter(), s.rate_window_seconds,
                                 max_seconds=s.max_request_seconds, metrics=self.metrics, tracing=self.tracing)
        self.metrics.watch(holds=store.holds_outstanding, pool=store.pool_stats, breakers=self.router.breaker_states)
        self.concurrency = KeyConcurrency(self._in_flight(), s.key_max_concurrent)
        self.chat = ChatService(self.router, self.rates, self.metering, max_seconds=s.max_request_seconds)
        self.embeddings = EmbeddingsService(self.router, self.rates, self.metering)
        self.images = ImagesService(self.router, self.rates, self.metering)
        self.audio = AudioService(self.router, self.rates, self.metering)
        self.responses = ResponsesService(self.router, self.rates, self.metering, self.chat,
                                          max_seconds=s.max_request_seconds)
        await self._start_cache()
        served = {spec.id for spec in self.catalog
                  if spec.priced and any(d.provider in providers for d in spec.deployments)}
        self._served = served
        self.catalog_json = meta.catalog_document(self.catalog, self.rates, served)
        self.models_json = meta.models_list(self.catalog, served)
        self._start_dashboard()
        try:   # settlements a previous run could not write (the sweeper keeps retrying them)
            await self.billing.replay_journal()
        except Exception:  # serving starts anyway; the sweeper replays the journal again
            log.exception("replaying the settle journal at start failed")
        self._tasks.append(asyncio.create_task(self.billing.renew_forever()))
        self._tasks.append(asyncio.create_task(self.billing.sweep_forever()))
        if self.metrics_dir:   # every second: this worker's counts and gauges to its files, for any scrape
            self._tasks.append(asyncio.create_task(self.metrics.sample_forever()))
        # start-up objects live as long as the process: keep the collector from rescanning them
        # (docs/performance.md: full collections were 12-17 % of wall time under load)
        gc.collect()
        gc.freeze()

    async def _start_cache(self) -> None:
        from aicredits.cache_wiring import build_cache
        self.cache, self._cache_engine = await build_cache(self.settings, self)
        self.chat.cache = self.cache
        if self.cache is not None:
            try:
                await self.cache.refresh()      # what earlier runs and other processes stored
            except Exception:
                log.warning("cache: could not read the stored entries at start", exc_info=True)
            self._tasks.append(asyncio.create_task(self.cache.follow_forever()))

    def _observe(self) -> None:
        """Metrics always (counted in memory, or in files under --workers N); traces only when a
        collector is configured (docs/operations.md)."""
        from aicredits.infra.metrics import PrometheusMetrics

        s = self.settings
        self.metrics = PrometheusMetrics(self.metrics_dir)
        if s.otel_endpoint:
            from aicredits.infra.tracing import OtelTracing
            self.tracing = self._tracer = OtelTracing(
                s.otel_endpoint, headers=s.otel_headers, service_name=s.otel_service_name,
                sample_ratio=s.otel_sample_ratio, propagate_upstream=s.otel_propagate_upstream)

    def _start_dashboard(self) -> None:
        """The dashboard's own engine (SQLAlchemy; it connects on its first page, not now)."""
        from aicredits.api import admin_api
        from aicredits.infra.mail import SmtpMailer
        from aicredits.web.app import build

        self._web_engine = make_engine(self.settings.database_url)
        # top-ups share it: the wallet pages and POST /webhooks/razorpay (off the /v1 hot path)
        self.payments = PaymentsService(self._web_engine, build_payment_providers(self.settings.payments),
                                        self.settings.payments.terms)
        self.web, self.web_context = build(self.settings, self._web_engine, on_key_revoked=self.keys.forget,
                                           mailer=SmtpMailer.from_settings(self.settings), payments=self.payments)
        self.web_context.runtime = Runtime(self.catalog, self.rates, self.router, self._served,
                                           builtin_ids=(e["id"] for e in builtin_entries()),
                                           configured=(e["id"] for e in self.settings.extra_models))
        self.admin_api = admin_api.build(self._web_engine, self.settings, on_key_revoked=self.keys.forget)

    async def shutdown(self) -> None:
        # uvicorn calls this once its drain time (AICREDITS_DRAIN_SECONDS) is over, right after
        # cancelling the requests still running: let them send their cut events and settle first
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_GRACE_SECONDS * 2)
        for t in self._tasks:
            t.cancel()
        if self._web_engine is not None:
            await self._web_engine.dispose()
        await self.billing.drain()
        if self.cache is not None:
            await self.cache.drain()
        if self._cache_engine is not None:
            await self._cache_engine.dispose()
        if self.payments is not None:
            await self.payments.close()
        if self._session is not None:
            await self._session.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.billing.store.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._tracer is not None:
            await asyncio.to_thread(self._tracer.shutdown)

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._tracer is None or scope["path"] in UNTRACED:
                await self.handle(scope, receive, send)
            else:
                await self._tracer.serve(scope, receive, send, self.handle, route_of(scope["path"]))
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope, receive, send) -> None:
        scope["aicredits.started"] = time.perf_counter()
        req = Request(scope, receive, self.body_budget)
        started = False
        me = asyncio.current_task()
        self._inflight.add(me)
        status = 0
        state = begin_request(route_of(scope["path"]))

        async def tracking_send(message) -> None:
            nonlocal started, status
            if not started:
                started = True
                status = message.get("status", 0)
            await send(message)

        try:
            methods = ROUTES.get(scope["path"])
            if methods is None:
                path = scope["path"]
                if self.admin_api is not None and (path.startswith("/admin/api/") or path == "/admin/api"):
                    await self.admin_api(scope, receive, tracking_send)
                    return
                if self.web is not None and (path.startswith("/dashboard/") or path == "/dashboard"):
                    await self.web(scope, receive, tracking_send)
                    return
                raise NotFound(f"Unknown route: {scope['method']} {scope['path']}.")
            handler = methods.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}; "
                                       f"use {', '.join(methods)}.")
            await handler(self, req, tracking_send)
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
        except GatewayError as exc:
            if not started:
                status = exc.status
                extra = [(b"x-request-id", req.request_id.encode())]
                if isinstance(exc, MethodNotAllowed):
                    extra.append((b"allow", ", ".join(ROUTES[scope["path"]]).encode()))
                await send_error(send, exc, extra)
        except StoreUnavailable as exc:   # a read that needed the database (credits): 503, not 500
            log.warning("%s %s (request %s): %s", scope["method"], scope["path"], req.request_id, exc)
            if not started:
                status = 503
                await send_error(send, database_unavailable(), [(b"x-request-id", req.request_id.encode())])
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], req.request_id)
            if not started:
                status = 500
                await send_error(send, InternalError("The gateway failed to handle this request; it has been "
                                                     "logged with its request id."),
                                 [(b"x-request-id", req.request_id.encode())])
        finally:
            req.release_body()
            if req.slot is not None:
                await self.concurrency.leave(req.slot)
            self._inflight.discard(me)
            if not state.settled:   # a settled call was counted and logged by its settle
                self._answered(state, req, status)

    def _answered(self, state: RequestState, req: Request, status: int) -> None:
        """Count (and, on /v1, log) a request that settled no call: refused, invalid, not billable."""
        if self.metrics is not None:
            self.metrics.answered(state.route, status)
        path = req.scope["path"]
        if path.startswith("/v1/"):
            calls_log.info("request", extra={"fields": {
                "request_id": req.request_id, "key_id": state.key_id, "route": path, "method": req.scope["method"],
                "status": status, "latency_ms": int((time.perf_counter() - req.scope["aicredits.started"]) * 1000)}})


def create_app(settings: Settings | None = None) -> Gateway:
    """The app of one `serve --workers N` worker process (uvicorn's factory): its logging is set
    up here, as `serve` does for a single process."""
    settings = settings or load_settings()
    logs.configure(settings.log_level, settings.access_log, settings.log_format)
    # set by `serve` before the workers start: every worker writes its metrics there
    from aicredits.infra.metrics import MULTIPROC_ENV
    return Gateway(settings, metrics_dir=os.environ.get(MULTIPROC_ENV) or None)
