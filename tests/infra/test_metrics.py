"""infra/metrics.py's tallies: calls counted in plain numbers and added to the metrics when scraped
give exactly what prometheus-client's own observe/inc one value at a time gives."""

from __future__ import annotations

import asyncio
import math
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aicredits.infra.metrics import OVERHEAD_BUCKETS, UPSTREAM_BUCKETS, PrometheusMetrics


def samples(text: str) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_tallies_equal_observing_one_value_at_a_time():
    rng = random.Random(7)
    metrics = PrometheusMetrics()
    ref = CollectorRegistry()
    requests = Counter("aicredits_requests", "", ("route", "model", "provider", "status", "cache"), registry=ref)
    overhead = Histogram("aicredits_overhead_seconds", "", ("route",), buckets=OVERHEAD_BUCKETS, registry=ref)
    upstream = Histogram("aicredits_upstream_seconds", "", ("provider", "model"), buckets=UPSTREAM_BUCKETS,
                         registry=ref)
    tokens = Counter("aicredits_tokens", "", ("model", "provider", "direction"), registry=ref)
    charged = Counter("aicredits_charged_micro_inr", "", ("route", "model", "provider"), registry=ref)
    edges = [*OVERHEAD_BUCKETS, 2.0, 0.0]   # values on a bucket's bound, and past the last one
    scrapes = []
    for n in range(400):
        route, model = rng.choice(("/v1/chat/completions", "/v1/embeddings")), rng.choice(("a/x", "b/y"))
        status, cache = rng.choice((200, 200, 502, 499)), rng.choice(("bypass", "hit"))
        over = edges[n] if n < len(edges) else rng.uniform(0, 0.02)
        up = 0.0 if cache == "hit" else rng.choice((*UPSTREAM_BUCKETS, rng.uniform(0, 400)))
        tin, tout, cost = rng.randrange(0, 5000), rng.randrange(0, 900), rng.randrange(0, 10**7)
        metrics.settled(route, model, "p", status, cache, over, up, tin, tout, cost)
        requests.labels(route, model, "p", str(status), cache).inc()
        overhead.labels(route).observe(over)
        if up > 0:
            upstream.labels("p", model).observe(up)
        tokens.labels(model, "p", "input").inc(tin)
        tokens.labels(model, "p", "output").inc(tout)
        charged.labels(route, model, "p").inc(cost)
        if n % 97 == 0:   # scrapes in between flush part of the tallies
            scrapes.append(asyncio.run(metrics.render()))
    got = samples(asyncio.run(metrics.render()).decode())
    want = samples(generate_latest(ref).decode())
    for key in set(want) | set(got):
        if not key[0].startswith(("aicredits_requests", "aicredits_overhead", "aicredits_upstream_seconds",
                                  "aicredits_tokens", "aicredits_charged")):
            continue
        mine, theirs = got.get(key, 0.0), want.get(key, 0.0)
        if key[0].endswith("_sum"):   # floats added in another order
            assert math.isclose(mine, theirs, rel_tol=1e-12), key
        else:
            assert mine == theirs, key
    assert sum(v for (name, _), v in got.items() if name == "aicredits_requests_total") == 400
    assert len(scrapes) == 5


def test_counts_that_are_not_calls():
    metrics = PrometheusMetrics()
    for _ in range(3):
        metrics.answered("/v1/models", 200)
    metrics.rate_limited("/v1/chat/completions", "rpm,tpm")
    metrics.upstream_failed("openai", "openai:gpt-4o", 503)
    metrics.upstream_failed("openai", "openai:gpt-4o", 503)
    got = samples(asyncio.run(metrics.render()).decode())
    assert got[("aicredits_requests_total", frozenset({("route", "/v1/models"), ("model", ""), ("provider", ""),
                                                      ("status", "200"), ("cache", "")}))] == 3
    assert got[("aicredits_rate_limited_total", frozenset({("route", "/v1/chat/completions"),
                                                          ("limit", "rpm,tpm")}))] == 1
    assert got[("aicredits_upstream_errors_total", frozenset({("provider", "openai"), ("deployment", "openai:gpt-4o"),
                                                             ("status", "503")}))] == 2
    # a route that only answered has no latency series
    assert not [k for k in got if k[0].startswith("aicredits_overhead") and ("route", "/v1/models") in k[1]]
