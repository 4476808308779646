"""Redis stopped and restarted under load, then partitioned, on the scale-out mode (PostgreSQL +
Redis; one `serve --workers 2` and one separate `serve`): rate limits fail open as
docs/rate-limits.md says (a limited key is admitted uncounted, and counted again once Redis
answers), the exact cache (its entries in Redis) misses instead of failing, no call fails or
slows because of Redis, /health/ready names Redis within its timeout, and the books are exact."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import httpx

from tests.conftest import expected_micros, free_port, stop_all
from tests.loadgen import (
    assert_books,
    make_keys,
    plain_call,
    stream_call,
    tracebacks,
    verify_ledger,
    wait_no_holds,
)
from tests.tcp_proxy import ThreadedProxy

RPM = 3
READY_TIMEOUT = 1.0


class RedisServer:
    """A redis-server of this test's own (the shared one on 6379 is never stopped)."""

    def __init__(self, port: int, workdir) -> None:
        self.port, self.workdir, self.proc = port, workdir, None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False,
                              text=True).stdout.strip() == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def probe(client, key: str, tag: str) -> tuple[int, str | None]:
    """The same question each time (the exact cache's entry): its status and x-aicredits-cache."""
    r = await client.post("/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": [
        {"role": "user", "content": "What is the cache probe?"}]},
        headers={"Authorization": f"Bearer {key}", "x-request-id": f"{tag}-{uuid.uuid4().hex[:6]}"})
    return r.status_code, r.headers.get("x-aicredits-cache")


async def limited_calls(clients, key: str, n: int, tag: str) -> list[int]:
    """n calls of the rpm-limited key, alternating the gateways; their statuses."""
    out = []
    for i in range(n):
        r = await plain_call(clients[i % len(clients)], key, f"{tag}-{i}-{uuid.uuid4().hex[:6]}")
        out.append(r.status)
    return out


async def limiter_answers(clients, key: str, within: float = 15.0) -> float:
    """Seconds until every gateway process counts through Redis again: 8 calls in a row, over
    both gateways (and so, by the kernel's spreading, both workers of the first), all carry the
    rate-limit headers, which a process sends only when Redis answered its check."""
    start = time.monotonic()
    streak = 0
    while streak < 8:
        assert time.monotonic() - start < within, "the rate limiter did not come back"
        r = await clients[streak % len(clients)].post(
            "/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": [
                {"role": "user", "content": "is the limiter back?"}], "no_cache": True},
            headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        streak = streak + 1 if "x-ratelimit-remaining-requests" in r.headers else 0
        if not streak:
            await asyncio.sleep(0.2)
    return time.monotonic() - start


def test_redis_stopped_restarted_and_partitioned_under_load(start_gateway, make_pg_db, upstream, tmp_path):
    dsn = make_pg_db()
    redis = RedisServer(free_port(), tmp_path).start()
    proxy = ThreadedProxy(target_port=redis.port)
    env = {"AICREDITS_REDIS_URL": proxy.url(), "AICREDITS_READY_TIMEOUT": str(READY_TIMEOUT),
           "AICREDITS_CACHE_EXACT": "true"}
    gateways = []
    try:
        gateways = start_gateway.many({"db_url": dsn, "workers": 2, "env": env}, {"db_url": dsn, "env": env})
        keys = make_keys(dsn, 3, 100_000_000, rpm=100_000)      # limited (Redis in their path), never refused
        (limited,) = make_keys(dsn, 1, 100_000_000, rpm=RPM)
        (prober,) = make_keys(dsn, 1, 100_000_000)
        entry = gateways[0].catalog()["openai/gpt-4o-mini"]
        results, polls, phases = [], [], {}

        async def run() -> None:
            clients = [httpx.AsyncClient(base_url=g.base_url) for g in gateways]
            stop = asyncio.Event()

            async def caller(n: int) -> None:
                i = 0
                while not stop.is_set():
                    call = stream_call if (n + i) % 2 else plain_call
                    results.append(await call(clients[(n + i) % 2], keys[n % len(keys)]["key"],
                                              f"redis-{n}-{i}-{uuid.uuid4().hex[:6]}", extra={"no_cache": True}))
                    i += 1
                    await asyncio.sleep(0.02)

            async def ready() -> None:
                while not stop.is_set():
                    for c in clients:
                        t = time.monotonic()
                        r = await c.get("/health/ready", timeout=30)
                        polls.append((t, time.monotonic(), r.status_code, r.json()))
                    await asyncio.sleep(0.3)

            tasks = [asyncio.create_task(caller(n)) for n in range(4)] + [asyncio.create_task(ready())]
            try:
                phases["before"] = await limited_calls(clients, limited["key"], RPM + 2, "before")
                cache = [await probe(clients[0], prober["key"], "probe")]
                await asyncio.sleep(1.2)                   # every process has learnt the entry
                cache += [await probe(c, prober["key"], "probe") for c in clients]
                phases["cache_before"] = cache
                # stopped: connections refused
                onset = time.monotonic()
                await asyncio.to_thread(redis.stop)
                await asyncio.sleep(1.0)
                phases["stopped"] = await limited_calls(clients, limited["key"], RPM + 2, "stopped")
                phases["cache_stopped"] = [await probe(c, prober["key"], "probe") for c in clients]
                await asyncio.sleep(1.0)
                phases["stopped_window"] = (onset, time.monotonic())
                await asyncio.to_thread(redis.start)        # restarted, empty
                await asyncio.sleep(2.5)                    # the limiter asks again after 1 s
                phases["limiter_back"] = await limiter_answers(clients, keys[0]["key"])
                phases["restarted"] = await limited_calls(clients, limited["key"], RPM + 2, "restarted")
                cache = [await probe(clients[0], prober["key"], "probe")]   # a new, empty Redis
                await asyncio.sleep(1.2)
                phases["cache_restarted"] = cache + [await probe(c, prober["key"], "probe") for c in clients]
                # partitioned: connections open, nothing answers
                onset = time.monotonic()
                await asyncio.to_thread(proxy.set_mode, "partition")
                await asyncio.sleep(1.0)
                phases["partitioned"] = await limited_calls(clients, limited["key"], RPM + 2, "partition")
                await asyncio.sleep(1.0)
                phases["partition_window"] = (onset, time.monotonic())
                await asyncio.to_thread(proxy.set_mode, "pass")
                await asyncio.sleep(2.5)
                phases["healed"] = await asyncio.gather(*(c.get("/health/ready") for c in clients))
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                for c in clients:
                    await c.aclose()

        asyncio.run(run())

        # rate limits: enforced through Redis, open (uncounted) while it is away, enforced again after
        assert phases["before"] == [200] * RPM + [429, 429]
        assert phases["stopped"] == [200] * (RPM + 2)
        assert phases["limiter_back"] < 5.0      # normally at once: it asked again 1 s after its failure
        assert phases["restarted"] == [200] * RPM + [429, 429]     # a new Redis: counting from zero
        assert phases["partitioned"] == [200] * (RPM + 2)
        # the exact cache: hits through Redis; misses (not failures) while it is away; hits again after
        assert phases["cache_before"] == [(200, "miss"), (200, "hit"), (200, "hit")]
        assert phases["cache_stopped"] == [(200, "miss"), (200, "miss")]
        assert phases["cache_restarted"] == [(200, "miss"), (200, "hit"), (200, "hit")]
        # no call failed, and none waited on Redis past its timeout (0.5 s) by much
        assert {(r.status, r.error) for r in results} == {(200, None)}
        assert all(r.complete for r in results if r.stream)
        for window in ("stopped_window", "partition_window"):
            onset, end = phases[window]
            during = [r for r in results if onset <= r.started <= end]
            assert during and max(r.elapsed for r in during) < 2.0, (window, max(r.elapsed for r in during))
            # readiness names Redis (and only Redis), within its own timeout
            down = [p for p in polls if p[0] >= onset + 0.7 and p[1] <= end]
            assert down and all(p[2] == 503 and p[3]["redis"] == "unavailable" and p[3]["db"] == "ok"
                                for p in down), (window, down)
            assert max(p[1] - p[0] for p in down) <= READY_TIMEOUT + 1.0
        assert [r.status_code for r in phases["healed"]] == [200, 200]
        assert [r.json()["redis"] for r in phases["healed"]] == ["ok", "ok"]

        wait_no_holds(dsn, 5)
        assert_books(dsn, results, lambda p, c: expected_micros(entry, p, c))
        assert verify_ledger(dsn) == []
        for g in gateways:
            assert tracebacks(g.log()) == []
    finally:
        stop_all(gateways)
        proxy.stop()
        redis.stop()
