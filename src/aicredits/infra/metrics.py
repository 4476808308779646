"""Prometheus metrics (prometheus-client): the gateway's `Metrics` (aicredits/telemetry.py) and the
text served at GET /metrics. docs/operations.md lists every metric and how to read it.

One process keeps its metrics in memory. Under `serve --workers N` every worker writes its own to
files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process mode; `serve` makes a fresh
directory per start), and the worker that answers a scrape reads them all: one scrape reports
every worker's calls, summed.

Calls are counted as they settle (one dictionary lookup and a few increments per call). What is
not per call is read when it is needed: holds outstanding from the database at scrape time (the
same whichever worker answers), and each process's database pool and circuit breakers, which the
scraping process refreshes first and every other worker refreshes every SAMPLE_SECONDS.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger("aicredits.metrics")
disable_created_metrics()   # no *_created series: they double the output and no panel reads them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"   # prometheus-client's own variable (set by `serve`)
SAMPLE_SECONDS = 5.0
# the gateway's own time per call: well under a millisecond when healthy
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# time waiting on the provider: a whole answer, or a whole stream
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")

PoolStats = Callable[[], dict]                       # store.pool_stats
Breakers = Callable[[], dict[str, tuple[int, float]]]  # router.breaker_states
Holds = Callable[[], Awaitable[tuple[int, int]]]     # store.holds_outstanding


def forget_dead_processes(path: str) -> None:
    """Drop the per-process gauges of workers that are gone (a crashed worker's pool and breakers
    must not be reported for ever); their counters stay, they count calls that happened."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        m = _LIVE_FILE.search(name)
        if m is None:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)
        except PermissionError:   # alive, another user's
            pass


class _Holds:
    """aicredits_holds_outstanding*: read from the database when scraped, not counted in memory."""

    def __init__(self) -> None:
        self.value: tuple[int, int] | None = None

    def collect(self):
        if self.value is None:
            return
        count, amount = self.value
        yield GaugeMetricFamily("aicredits_holds_outstanding", "Holds not yet settled (all processes).",
                                value=count)
        yield GaugeMetricFamily("aicredits_holds_outstanding_micro_inr",
                                "Credits reserved by holds not yet settled, in micro-INR.", value=amount)


class PrometheusMetrics:
    content_type = CONTENT_TYPE_PLAIN_0_0_4.encode()   # our names need nothing newer

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        reg = CollectorRegistry(auto_describe=False)
        call = ("route", "model", "provider", "status", "cache")
        self.requests = Counter("aicredits_requests", "Requests answered, by route, model, provider, status and "
                                "cache result.", call, registry=reg)
        self.overhead = Histogram("aicredits_overhead_seconds", "The gateway's own time per call (wall time "
                                  "minus time waiting on the provider).", ("route",), buckets=OVERHEAD_BUCKETS,
                                  registry=reg)
        self.upstream = Histogram("aicredits_upstream_seconds", "Time waiting on the provider per call (all "
                                  "its attempts; a stream until its end).", ("provider", "model"),
                                  buckets=UPSTREAM_BUCKETS, registry=reg)
        self.tokens = Counter("aicredits_tokens", "Billed tokens, by direction (input: prompt, output: "
                              "completion).", ("model", "provider", "direction"), registry=reg)
        self.charged = Counter("aicredits_charged_micro_inr", "Credits charged, in micro-INR (1e-6 INR).",
                               ("route", "model", "provider"), registry=reg)
        self.refused = Counter("aicredits_rate_limited", "Calls refused by their key's rate limits (429).",
                               ("route", "limit"), registry=reg)
        self.upstream_errors = Counter("aicredits_upstream_errors", "Failed upstream attempts, by the status "
                                       "the gateway mapped them to.", ("provider", "deployment", "status"),
                                       registry=reg)
        # per process; under --workers N summed (pool) or the worst of them (breakers)
        self.breaker_open = Gauge("aicredits_breaker_open", "1 while a deployment's circuit breaker is open "
                                  "(in any worker).", ("deployment",), multiprocess_mode="livemax", registry=reg)
        self.breaker_failures = Gauge("aicredits_breaker_failures", "A deployment's consecutive failures (the "
                                      "most of any worker).", ("deployment",), multiprocess_mode="livemax",
                                      registry=reg)
        self.pool_size = Gauge("aicredits_db_pool_connections", "Database connections open (all workers).",
                               multiprocess_mode="livesum", registry=reg)
        self.pool_in_use = Gauge("aicredits_db_pool_in_use", "Database connections running a query (all "
                                 "workers).", multiprocess_mode="livesum", registry=reg)
        self.pool_max = Gauge("aicredits_db_pool_max", "Most database connections the pools may open (all "
                              "workers).", multiprocess_mode="livesum", registry=reg)
        self.pool_waiting = Gauge("aicredits_db_pool_waiting", "Operations waiting for a database connection "
                                  "(all workers).", multiprocess_mode="livesum", registry=reg)
        self.pool_acquires = Counter("aicredits_db_pool_acquires", "Database connections taken from the pool.",
                                     registry=reg)
        self.pool_wait = Counter("aicredits_db_pool_wait_seconds", "Time spent waiting for a database "
                                 "connection.", registry=reg)
        self.processes = Gauge("aicredits_processes", "Gateway processes serving (workers).",
                               multiprocess_mode="livesum", registry=reg)
        self.processes.set(1)
        self._children: dict[tuple, tuple] = {}
        self._holds = _Holds()
        self._pool: PoolStats | None = None
        self._breakers: Breakers | None = None
        self._holds_source: Holds | None = None
        self._last_pool = (0, 0.0)
        if multiprocess_dir:
            forget_dead_processes(multiprocess_dir)
            self.registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(self.registry, multiprocess_dir)
        else:
            self.registry = reg
        self.registry.register(self._holds)

    def watch(self, *, holds: Holds | None = None, pool: PoolStats | None = None,
              breakers: Breakers | None = None) -> None:
        """The sources of what is read rather than counted."""
        self._holds_source, self._pool, self._breakers = holds, pool, breakers

    # ------------------------------------------------------------------ the Metrics interface
    def settled(self, route: str, model: str, provider: str, status: int, cache: str, overhead_seconds: float,
                upstream_seconds: float, input_tokens: int, output_tokens: int, charged_micros: int) -> None:
        key = (route, model, provider, status, cache)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = (
                self.requests.labels(route, model, provider, str(status), cache), self.overhead.labels(route),
                self.upstream.labels(provider, model), self.tokens.labels(model, provider, "input"),
                self.tokens.labels(model, provider, "output"), self.charged.labels(route, model, provider))
        c[0].inc()
        c[1].observe(overhead_seconds)
        if upstream_seconds > 0:
            c[2].observe(upstream_seconds)
        if input_tokens:
            c[3].inc(input_tokens)
        if output_tokens:
            c[4].inc(output_tokens)
        if charged_micros:
            c[5].inc(charged_micros)

    def answered(self, route: str, status: int) -> None:
        self.requests.labels(route, "", "", str(status), "").inc()

    def rate_limited(self, route: str, limits: str) -> None:
        self.refused.labels(route, limits).inc()

    def upstream_failed(self, provider: str, deployment: str, status: int) -> None:
        self.upstream_errors.labels(provider, deployment, str(status)).inc()

    # ------------------------------------------------------------------ read, not counted
    def refresh(self) -> None:
        """This process's pool and breaker gauges, from their sources."""
        if self._pool is not None:
            s = self._pool()
            self.pool_size.set(s["size"])
            self.pool_in_use.set(s["in_use"])
            self.pool_max.set(s["max"])
            self.pool_waiting.set(s["waiting"])
            acquires, waited = s.get("acquires", 0), s.get("wait_seconds", 0.0)
            last_acquires, last_waited = self._last_pool
            if acquires > last_acquires:
                self.pool_acquires.inc(acquires - last_acquires)
            if waited > last_waited:
                self.pool_wait.inc(waited - last_waited)
            self._last_pool = (acquires, waited)
        if self._breakers is not None:
            for name, (failures, open_for) in self._breakers().items():
                self.breaker_open.labels(name).set(1 if open_for > 0 else 0)
                self.breaker_failures.labels(name).set(failures)

    async def sample_forever(self, every: float = SAMPLE_SECONDS) -> None:
        """Under --workers N: keep this worker's gauges fresh for whichever worker is scraped."""
        while True:
            await asyncio.sleep(every)
            try:
                self.refresh()
            except Exception:  # keep sampling; the next round retries
                log.exception("refreshing the metrics failed")

    async def render(self) -> bytes:
        """The text exposition format (what GET /metrics answers)."""
        self.refresh()   # first: the pool as the calls left it, not as the holds query below uses it
        if self._holds_source is not None:
            try:
                self._holds.value = await self._holds_source()
            except Exception:  # the scrape still answers; the holds gauges are left out
                log.exception("reading the holds outstanding for /metrics failed")
                self._holds.value = None
        if self.multiprocess_dir:
            forget_dead_processes(self.multiprocess_dir)
        return generate_latest(self.registry)

    def close(self) -> None:
        """A worker stopping: its per-process gauges leave the scrape."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
