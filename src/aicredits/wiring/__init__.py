"""The composition root: Settings -> stores -> providers -> services, built in one place
(`build_services`) into one typed, fully-constructed `Services`. Nothing here serves a request
(api/dispatch.py does) or runs in the background (lifespan.py starts and stops that);
`wiring/routes.py` hands each route the services it uses, `wiring/cache.py` composes the
response caches."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aicredits.api.http import ASGIApp
from aicredits.catalog import builtin_entries, load_catalog
from aicredits.domain.catalog import Catalog
from aicredits.domain.pricing import Rates
from aicredits.infra.journal import FileJournal
from aicredits.infra.metrics import PrometheusMetrics
from aicredits.ports import BillingStore, InFlight, RateLimiter
from aicredits.providers.http import make_session
from aicredits.providers.payments import build_payment_providers
from aicredits.providers.registry import build_providers
from aicredits.services.audio import AudioService
from aicredits.services.billing import Billing
from aicredits.services.cache import CacheService
from aicredits.services.chat import ChatService
from aicredits.services.concurrency import KeyConcurrency
from aicredits.services.embeddings import EmbeddingsService
from aicredits.services.images import ImagesService
from aicredits.services.keys import KeyAuthenticator
from aicredits.services.metering import Metering
from aicredits.services.payments import PaymentsService
from aicredits.services.rejected import RejectedCalls
from aicredits.services.responses import ResponsesService
from aicredits.services.routing import RoutePolicy, Router
from aicredits.services.runtime import Runtime
from aicredits.settings import Settings
from aicredits.store.db import Engine, dialect_of, make_engine, postgres_dsn, sqlite_file
from aicredits.telemetry import NO_TRACING, Tracing
from aicredits.wiring.cache import build_cache

if TYPE_CHECKING:
    import aiohttp
    from redis.asyncio import Redis

    from aicredits.infra.tracing import OtelTracing
    from aicredits.web.app import WebContext

log = logging.getLogger("aicredits")


@dataclass(frozen=True)
class WebParts:
    dashboard: ASGIApp
    context: WebContext
    admin_api: ASGIApp


@dataclass(frozen=True, eq=False)
class Services:
    """Everything one process serves with, built and connected (the database pool, Redis, the
    upstream session), each typed. Handlers get the parts they use (wiring/routes.py)."""

    settings: Settings
    catalog: Catalog
    rates: Rates
    served: frozenset[str]            # models of the catalog that are priced and have a configured provider
    metrics: PrometheusMetrics        # counted in memory, or in files under --workers N
    tracing: Tracing                  # OtelTracing when AICREDITS_OTEL_ENDPOINT is set, else the no-op
    tracer: OtelTracing | None        # the same, when it is on (it wraps requests and is shut down)
    store: BillingStore               # the hot-path billing store (SQLite or PostgreSQL)
    session: aiohttp.ClientSession    # every upstream call's connection pool
    redis: Redis | None
    billing: Billing
    keys: KeyAuthenticator
    router: Router
    metering: Metering
    concurrency: KeyConcurrency
    chat: ChatService
    embeddings: EmbeddingsService
    images: ImagesService
    audio: AudioService
    responses: ResponsesService
    cache: CacheService | None        # None when every cache layer is off
    cache_engine: Engine | None
    engine: Engine                    # the dashboard's, the admin API's and the top-ups' (SQLAlchemy)
    payments: PaymentsService
    rejected: RejectedCalls           # usage rows of refused calls (services/rejected.py)
    build_web: Callable[[], WebParts] = field(repr=False)   # the dashboard and the admin API (`web`)
    _web: list[WebParts] = field(default_factory=list, repr=False)   # [the parts], once built
    _web_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def web(self) -> WebParts:
        """The dashboard and the admin API, built on their first request (`built_web`) or first
        use here, not at start: their imports (Starlette, Jinja2, Babel, every page's module) and
        objects are about a tenth of a start's CPU, which a process that serves only /v1 never
        needs."""
        if not self._web:
            self._web.append(self.build_web())
        return self._web[0]

    async def built_web(self) -> WebParts:
        """`web`, built in a worker thread the first time, so the requests in flight are not held
        up while it is (the first page waits for it: ~0.1-0.2 s)."""
        if not self._web:
            async with self._web_lock:
                if not self._web:
                    parts = await asyncio.to_thread(self.build_web)
                    if not self._web:
                        self._web.append(parts)
        return self._web[0]

    @property
    def web_context(self) -> WebContext:
        return self.web.context

    @property
    def admin_api(self) -> ASGIApp:           # /admin/api (api/admin_api.py)
        return self.web.admin_api

    async def close(self) -> None:
        """Close what build_services opened, once the requests and background tasks are done:
        pending settlements are drained before the store closes."""
        await self.engine.dispose()
        await self.billing.drain()
        await self.rejected.drain()
        if self.cache is not None:
            await self.cache.drain()
        if self.cache_engine is not None:
            await self.cache_engine.dispose()
        await self.payments.close()
        await self.session.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.close()
        self.metrics.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)


async def open_billing_store(settings: Settings) -> BillingStore:
    if dialect_of(settings.database_url) == "sqlite":
        from aicredits.store.billing_sqlite import SqliteBilling
        path = sqlite_file(settings.database_url)
        assert path is not None   # the URL is SQLite's
        return SqliteBilling(path, settings.sqlite_busy_timeout)
    from aicredits.store.billing_pg import PostgresBilling
    return await PostgresBilling.connect(postgres_dsn(settings.database_url), timeout=settings.db_timeout)


def connect_redis(settings: Settings) -> Redis | None:
    """Redis when AICREDITS_REDIS_URL is set (it connects on its first command).

    A command is tried again once, at once, only when its connection broke (a pooled connection
    to a Redis that has since restarted); a timeout is not retried. redis-py's default (ten
    retries with backoff up to 1 s) would let one call wait many seconds while Redis is away,
    so a command costs at most two AICREDITS_REDIS_TIMEOUTs."""
    if not settings.redis_url:
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    return aioredis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout,
                             socket_connect_timeout=settings.redis_timeout,
                             retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


def rate_limiter(settings: Settings, redis: Redis | None) -> RateLimiter:
    """Per-key rpm/tpm counters: in Redis when configured (shared by every process), else in
    this process's memory."""
    if redis is not None:
        from aicredits.infra.ratelimit_redis import RedisRateLimiter
        return RedisRateLimiter(redis, settings.redis_prefix, settings.rate_window_seconds)
    from aicredits.infra.ratelimit_memory import MemoryRateLimiter
    return MemoryRateLimiter(settings.rate_window_seconds)


def in_flight(settings: Settings, redis: Redis | None) -> InFlight:
    """Per-key requests in flight: in Redis when configured (one cap across every process),
    else in this process's memory."""
    if redis is not None:
        from aicredits.infra.inflight_redis import RedisInFlight
        # a slot outlives the longest request (its body, then its call) by a minute
        return RedisInFlight(redis, settings.redis_prefix,
                             settings.body_timeout + settings.max_request_seconds + 60)
    from aicredits.infra.inflight_memory import MemoryInFlight
    return MemoryInFlight()


def observe(settings: Settings, metrics_dir: str | None) -> tuple[PrometheusMetrics, OtelTracing | None]:
    """Metrics always (counted in memory, or in files under --workers N); traces only when a
    collector is configured (docs/operations.md)."""
    metrics = PrometheusMetrics(metrics_dir)
    if not settings.otel_endpoint:
        return metrics, None
    from aicredits.infra.tracing import OtelTracing
    return metrics, OtelTracing(settings.otel_endpoint, headers=settings.otel_headers,
                                service_name=settings.otel_service_name, sample_ratio=settings.otel_sample_ratio,
                                propagate_upstream=settings.otel_propagate_upstream)


async def build_services(settings: Settings, metrics_dir: str | None = None) -> Services:
    """Every service of one process, connected. `metrics_dir`: prometheus-client's multi-process
    directory (serve --workers N)."""
    s = settings
    catalog = load_catalog(s.extra_models)
    rates = Rates(s.usd_inr_fraction, s.markup_fraction)
    metrics, tracer = observe(s, metrics_dir)
    tracing: Tracing = tracer if tracer is not None else NO_TRACING
    store = await open_billing_store(s)
    session = make_session(s.upstream_connect_timeout)
    providers = build_providers(s, session, catalog)
    quota = None
    if s.quota_slices:   # quota slices (docs/billing.md, "Quota slices")
        from aicredits.infra.journal import GrantJournal
        from aicredits.services.quota import Quota
        quota = Quota(store, GrantJournal(s.grant_journal_dir), slice_calls=s.quota_slice_calls,
                      min_calls=s.quota_min_calls, flush_seconds=s.quota_flush_seconds,
                      idle_seconds=s.hold_lease_seconds / 6, lease_ms=int(s.hold_lease_seconds * 1000),
                      settle_before_answer=not s.quota_deferred, min_running=s.quota_min_running)
    billing = Billing(store, lease_seconds=s.hold_lease_seconds, journal=FileJournal(s.journal_dir),
                      settle_retry_seconds=s.settle_retry_seconds, max_call_seconds=s.max_request_seconds,
                      quota=quota)
    keys = KeyAuthenticator(store, s.key_cache_seconds, tracing=tracing)
    billing.on_revoked = keys.forget
    router = Router(catalog, providers, RoutePolicy(
        s.retries, s.retry_base_delay, s.retry_max_delay, s.breaker_failures, s.breaker_cooldown,
        deadline=s.upstream_timeout), metrics=metrics)
    redis = connect_redis(s)
    metering = Metering(billing, rate_limiter(s, redis), s.rate_window_seconds, max_seconds=s.max_request_seconds,
                        metrics=metrics, tracing=tracing)
    metrics.watch(holds=store.holds_outstanding, pool=store.pool_stats, breakers=router.breaker_states)
    chat = ChatService(router, rates, metering, max_seconds=s.max_request_seconds)
    embeddings = EmbeddingsService(router, rates, metering)
    cache, cache_engine = await build_cache(s, catalog, embeddings, redis)
    chat.cache = cache
    served = frozenset(spec.id for spec in catalog
                       if spec.priced and any(d.provider in providers for d in spec.deployments))
    # the dashboard's, the admin API's and the top-ups' engine (it connects on its first use)
    engine = make_engine(s.database_url, s.sqlite_busy_timeout)
    payments = PaymentsService(engine, build_payment_providers(s.payments), s.payments.terms)
    return Services(
        settings=s, catalog=catalog, rates=rates, served=served, metrics=metrics, tracing=tracing, tracer=tracer,
        store=store, session=session, redis=redis, billing=billing, keys=keys, router=router, metering=metering,
        concurrency=KeyConcurrency(in_flight(s, redis), s.key_max_concurrent), chat=chat, embeddings=embeddings,
        images=ImagesService(router, rates, metering), audio=AudioService(router, rates, metering),
        responses=ResponsesService(router, rates, metering, chat, max_seconds=s.max_request_seconds),
        cache=cache, cache_engine=cache_engine, engine=engine, payments=payments, rejected=RejectedCalls(store),
        build_web=functools.partial(_web, s, catalog, rates, router, served, keys, engine, payments))


def _web(s: Settings, catalog: Catalog, rates: Rates, router: Router, served: frozenset[str],
         keys: KeyAuthenticator, engine: Engine, payments: PaymentsService) -> WebParts:
    """The dashboard and the admin API, on the dashboard's engine, off the /v1 hot path."""
    from aicredits.api import admin_api
    from aicredits.infra.mail import SmtpMailer
    from aicredits.services.admin_keys import AdminKeyAuthenticator
    from aicredits.services.audit import Audit
    from aicredits.services.history import History
    from aicredits.services.operator import Operator
    from aicredits.web.app import build

    dashboard, web_context = build(s, engine, on_key_revoked=keys.forget, mailer=SmtpMailer.from_settings(s),
                                   payments=payments)
    web_context.runtime = Runtime(catalog, rates, router, set(served), builtin_ids=(e["id"] for e in builtin_entries()),
                                  configured=(e["id"] for e in s.extra_models))
    admin = admin_api.build(admin_api.AdminServices(
        AdminKeyAuthenticator(engine, s.key_cache_seconds), Operator(engine, on_key_revoked=keys.forget),
        History(engine), Audit(engine), s.timezone, s.trust_proxy))
    return WebParts(dashboard, web_context, admin)
