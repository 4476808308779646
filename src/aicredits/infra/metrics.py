"""Prometheus metrics (prometheus-client): the gateway's `Metrics` (aicredits/telemetry.py) and the
text served at GET /metrics. docs/operations.md lists every metric and how to read it.

One process keeps its metrics in memory. Under `serve --workers N` every worker writes its own to
files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process mode; `serve` makes a fresh
directory per start), and the worker that answers a scrape reads them all: one scrape reports
every worker's calls, summed.

Calls are counted as they settle, in plain numbers (a dictionary lookup, a few additions and two
bucket searches: about a microsecond; prometheus-client's own observe takes a lock, and under
--workers N writes a file, for every value it touches). Those tallies are added to the metrics
when a scrape asks (the scraping process), and by every other worker every SAMPLE_SECONDS, so a
scrape under --workers N sees the other workers' calls of the last SAMPLE_SECONDS late. What is
not per call is read when it is needed: holds outstanding from the database at scrape time (the
same whichever worker answers), and each process's database pool and circuit breakers, refreshed
at the same times as the tallies.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator

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
SAMPLE_SECONDS = 1.0
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

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.value is None:
            return
        count, amount = self.value
        yield GaugeMetricFamily("aicredits_holds_outstanding", "Holds not yet settled (all processes).",
                                value=count)
        yield GaugeMetricFamily("aicredits_holds_outstanding_micro_inr",
                                "Credits reserved by holds not yet settled, in micro-INR.", value=amount)


class _Tally:
    """One label set's settled calls since the last flush."""
    __slots__ = ("calls", "charged", "input", "output", "overhead_buckets", "overhead_sum", "upstream_buckets",
                 "upstream_sum")

    def __init__(self) -> None:
        self.calls = self.input = self.output = self.charged = 0
        self.overhead_sum = self.upstream_sum = 0.0
        self.overhead_buckets = [0] * (len(OVERHEAD_BUCKETS) + 1)   # the last: +Inf
        self.upstream_buckets = [0] * (len(UPSTREAM_BUCKETS) + 1)


def _observe_many(child: Histogram, total: float, buckets: list[int]) -> None:
    """Add a flush's observations to a histogram's series at once (prometheus-client observes one
    value at a time; its buckets are per bucket, as ours, and cumulated when collected)."""
    if not any(buckets):
        return
    child._sum.inc(total)
    for value, n in zip(child._buckets, buckets, strict=True):
        if n:
            value.inc(n)


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
        self._calls: dict[tuple, _Tally] = {}           # settled calls, by label set, since the flush
        self._counts: dict[tuple, int] = {}              # (metric, labels) -> other counts since the flush
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
        t = self._calls.get(key)
        if t is None:
            t = self._calls[key] = _Tally()
        t.calls += 1
        t.overhead_sum += overhead_seconds
        t.overhead_buckets[bisect_left(OVERHEAD_BUCKETS, overhead_seconds)] += 1
        if upstream_seconds > 0:
            t.upstream_sum += upstream_seconds
            t.upstream_buckets[bisect_left(UPSTREAM_BUCKETS, upstream_seconds)] += 1
        t.input += input_tokens
        t.output += output_tokens
        t.charged += charged_micros

    def _count(self, metric: Counter, labels: tuple[str, ...]) -> None:
        key = (metric, labels)
        self._counts[key] = self._counts.get(key, 0) + 1

    def answered(self, route: str, status: int) -> None:
        self._count(self.requests, (route, "", "", str(status), ""))

    def rate_limited(self, route: str, limits: str) -> None:
        self._count(self.refused, (route, limits))

    def upstream_failed(self, provider: str, deployment: str, status: int) -> None:
        self._count(self.upstream_errors, (provider, deployment, str(status)))

    def flush(self) -> None:
        """Add the tallies since the last flush to the metrics (under --workers N: to this worker's
        files, where a scrape of any worker reads them)."""
        calls, self._calls = self._calls, {}
        for (route, model, provider, status, cache), t in calls.items():
            self.requests.labels(route, model, provider, str(status), cache).inc(t.calls)
            _observe_many(self.overhead.labels(route), t.overhead_sum, t.overhead_buckets)
            _observe_many(self.upstream.labels(provider, model), t.upstream_sum, t.upstream_buckets)
            if t.input:
                self.tokens.labels(model, provider, "input").inc(t.input)
            if t.output:
                self.tokens.labels(model, provider, "output").inc(t.output)
            if t.charged:
                self.charged.labels(route, model, provider).inc(t.charged)
        counts, self._counts = self._counts, {}
        for (metric, labels), n in counts.items():
            metric.labels(*labels).inc(n)

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
        """Under --workers N: keep this worker's counts and gauges fresh for whichever worker is
        scraped."""
        while True:
            await asyncio.sleep(every)
            try:
                self.flush()
                self.refresh()
            except Exception:  # keep sampling; the next round retries
                log.exception("refreshing the metrics failed")

    async def render(self) -> bytes:
        """The text exposition format (what GET /metrics answers)."""
        self.flush()
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
        """A worker stopping: its last counts are written, its per-process gauges leave the scrape."""
        self.flush()
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
