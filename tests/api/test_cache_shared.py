"""Response caches shared by gateway processes (real subprocesses): PostgreSQL and Redis, or the
database alone; a hit written by one process served by another within 1 s, never across
accounts; a Redis that stops makes calls misses, never failures; the CLI's stats and purge."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from tests.conftest import HTTP, free_port
from tests.fakes.openai_upstream import Scenario

CACHE = {"AICREDITS_CACHE_EXACT": "true"}


def ask(gw, key: dict, content: str = "What is the capital of France?", **extra) -> httpx.Response:
    r = HTTP.post(gw.v1 + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key['key']}"},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra})
    assert r.status_code == 200, r.text
    return r


def until_hit(gw, key: dict, content: str, within: float = 1.0) -> float:
    """Seconds until `gw` serves `content` from the cache (fails after `within` seconds)."""
    start = time.monotonic()
    while True:
        r = ask(gw, key, content)
        if r.headers["x-aicredits-cache"] == "hit":
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"no hit within {within} s"
        time.sleep(0.05)


@pytest.fixture(params=["redis", "database"])
def shared_env(request, make_pg_db):
    env = {**CACHE, "AICREDITS_DATABASE_URL": make_pg_db()}
    if request.param == "redis":
        env.update(AICREDITS_REDIS_URL=request.getfixturevalue("redis_url"),
                   AICREDITS_REDIS_PREFIX=f"aicredits-test-{uuid.uuid4().hex[:10]}:")
    return env


def test_a_hit_written_by_one_process_is_served_by_another_within_a_second(start_gateway, shared_env, upstream):
    spec = {"db_url": shared_env["AICREDITS_DATABASE_URL"], "env": {**shared_env, "AICREDITS_CACHE_SEMANTIC": "true"}}
    g1, g2 = start_gateway.many(spec, spec)
    email = f"x-{uuid.uuid4().hex[:8]}@example.com"
    a = g1.create_key(email=email)
    b = g1.create_key()
    upstream.enqueue(Scenario(content="Paris."))
    r = ask(g1, a)
    assert r.headers["x-aicredits-cache"] == "miss" and r.json()["choices"][0]["message"]["content"] == "Paris."
    time.sleep(1.0)     # the promise: visible to every process within 1 s
    r = ask(g2, a)
    assert r.headers["x-aicredits-cache"] == "hit" and r.json()["choices"][0]["message"]["content"] == "Paris."
    # a paraphrase, through the other process's semantic index
    r = ask(g2, a, "Tell me the capital city of France.")
    assert r.headers["x-aicredits-cache"] == "hit" and r.json()["choices"][0]["message"]["content"] == "Paris."
    # another account: never, on either process
    upstream.enqueue(Scenario(content="B's own answer"))
    r = ask(g2, b)
    assert r.headers["x-aicredits-cache"] == "miss" and r.json()["choices"][0]["message"]["content"] == "B's own answer"
    upstream.enqueue(Scenario(content="B's paraphrase"))
    r = ask(g1, b, "Tell me the capital city of France?!")
    assert r.json()["choices"][0]["message"]["content"] in ("B's own answer", "B's paraphrase")
    assert len(upstream.chat_requests()) in (2, 3)
    # the CLI purges A's entries: neither process serves them again
    stats = g1.cli("cache", "stats", "--json").stdout
    assert '"entries":' in stats
    out = g1.cli("cache", "purge", "--account", email).stdout
    assert out.startswith("purged 1 ")
    upstream.reset()
    upstream.enqueue(Scenario(content="fresh"), Scenario(content="fresh"))
    for gw in (g2, g1):
        assert ask(gw, a).json()["choices"][0]["message"]["content"] == "fresh"


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test only (stopped by the test or at its end)."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 10
    import redis
    while time.time() < deadline:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_a_redis_that_stops_makes_misses_never_failures(start_gateway, own_redis, upstream):
    proc, url = own_redis
    gw = start_gateway(env={**CACHE, "AICREDITS_REDIS_URL": url, "AICREDITS_REDIS_TIMEOUT": "0.2"})
    key = gw.create_key()
    upstream.enqueue(Scenario(content="stored"))
    assert ask(gw, key).headers["x-aicredits-cache"] == "miss"
    until_hit(gw, key, "What is the capital of France?")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    time.sleep(1.1)     # an entry read in the last second may still be served from memory
    for content in ("What is the capital of France?", "A new question"):
        upstream.enqueue(Scenario(content="live answer"))
        r = ask(gw, key, content)
        assert r.headers["x-aicredits-cache"] == "miss"
        assert r.json()["choices"][0]["message"]["content"] == "live answer"
    assert "cache lookup failed" in gw.log() or "cache store failed" in gw.log()
