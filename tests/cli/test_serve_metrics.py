"""`aicredits serve --workers 2` as a real process: one scrape of GET /metrics reports both
workers' calls summed (prometheus-client's multi-process mode in a fresh directory per start,
removed at exit); a worker killed with SIGKILL keeps its calls counted while its per-process
gauges leave the scrape once uvicorn has replaced it. (Each worker adds its calls to its files
every SAMPLE_SECONDS; the one answering a scrape adds its own first.)"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aicredits.infra.metrics import SAMPLE_SECONDS

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
OK = frozenset({("route", "/v1/chat/completions"), ("model", "openai/gpt-4o-mini"), ("provider", "openai"),
                ("status", "200"), ("cache", "bypass")})


def scrape(gw) -> dict:
    r = httpx.get(gw.base_url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def burst(gw, key: str, n: int) -> None:
    """n calls at once, each on its own connection (the kernel picks each one's worker)."""
    start = threading.Barrier(n)
    statuses: list[int] = []

    def one() -> None:
        start.wait()
        with httpx.Client(timeout=30) as c:
            statuses.append(c.post(gw.v1 + "/chat/completions", json=CHAT,
                                   headers={"Authorization": f"Bearer {key}"}).status_code)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * n


def call_pids(gw) -> list[int]:
    """The worker pid of every call the log records (one JSON line per call)."""
    pids = []
    for line in gw.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("logger") == "aicredits.calls" and rec.get("msg") == "call":
            pids.append(rec["pid"])
    return pids


def wait_for(predicate, seconds: float = 20.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_one_scrape_sums_every_worker(start_gateway, upstream):
    gw = start_gateway(workers=2)
    found = re.search(r"metrics are kept in (\S+) ", gw.log())
    assert found, gw.log()
    metrics_dir = Path(found.group(1))
    assert metrics_dir.is_dir()
    key = gw.create_key()["key"]

    calls = 0
    deadline = time.monotonic() + 30   # the ready answer can come from the first worker while the
    while time.monotonic() < deadline:  # second is still starting on a loaded machine
        burst(gw, key, 12)
        calls += 12
        if len(set(wait_for(lambda c=calls: (p := call_pids(gw)) and len(p) >= c and p))) == 2:
            break
    pids = call_pids(gw)
    assert len(set(pids)) == 2, "every call went to one worker for 30 s of bursts"

    time.sleep(SAMPLE_SECONDS + 0.5)   # the worker not scraped adds its calls to its files this often
    s = scrape(gw)
    assert s[("aicredits_requests_total", OK)] == calls == len(pids)
    assert s[("aicredits_tokens_total", frozenset({("model", "openai/gpt-4o-mini"), ("provider", "openai"),
                                                    ("direction", "input")}))] == 19 * calls
    assert s[("aicredits_overhead_seconds_count", frozenset({("route", "/v1/chat/completions")}))] == calls
    assert s[("aicredits_overhead_seconds_bucket", frozenset({("route", "/v1/chat/completions"),
                                                              ("le", "+Inf")}))] == calls
    assert s[("aicredits_processes", frozenset())] == 2

    # SIGKILL one worker: uvicorn starts another; the dead one's calls stay counted, its gauges go
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(list(metrics_dir.glob("gauge_livesum_*.db"))) == 2
             and not (metrics_dir / f"gauge_livesum_{victim}.db").exists()
             and scrape(gw)[("aicredits_processes", frozenset())] == 2, 30)
    s = scrape(gw)
    assert s[("aicredits_requests_total", OK)] == calls
    assert s[("aicredits_processes", frozenset())] == 2

    gw.stop()
    assert not metrics_dir.exists()
