"""PostgreSQL unreachable under load, both ways it happens, on the scale-out mode (PostgreSQL +
Redis; one `serve --workers 2` and one separate `serve`, every connection through a TCP proxy):
connections reset, then a partition (connections open, nothing answers). Calls that need the
database fail within the bound (2 x AICREDITS_DB_TIMEOUT: the key lookup, then the hold) with 503
service_unavailable and Retry-After, before any upstream call; /health/ready says 503 within
AICREDITS_READY_TIMEOUT; calls already holding finish (their settlements retried, then journaled
and replayed); the gateways recover by themselves; every call is billed exactly once and
`ledger verify` passes."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.conftest import PG_ADMIN_DSN, expected_micros, stop_all
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

DB_TIMEOUT = 1.0
READY_TIMEOUT = 1.0
OUTAGE = 5.0            # longer than every bound below, several times over
CALLERS = 6
SLACK = 1.5             # a loaded 2-core machine's scheduling delay on top of a bound


async def load(clients: list[httpx.AsyncClient], keys: list[dict], results: list, stop: asyncio.Event) -> None:
    async def caller(n: int) -> None:
        i = 0
        while not stop.is_set():
            client = clients[(n + i) % len(clients)]
            key = keys[(n + i) % len(keys)]["key"]
            call = stream_call if (n + i) % 2 else plain_call
            results.append((client, await call(client, key, f"db-{n}-{i}-{uuid.uuid4().hex[:6]}", timeout=30)))
            i += 1
            await asyncio.sleep(0.02)
    await asyncio.gather(*(caller(n) for n in range(CALLERS)))


async def readiness(client: httpx.AsyncClient, polls: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.monotonic()
        try:
            r = await client.get("/health/ready", timeout=30)
            polls.append((client, t, time.monotonic(), r.status_code, r.json()))
        except httpx.HTTPError as exc:
            polls.append((client, t, time.monotonic(), None, type(exc).__name__))
        await asyncio.sleep(0.3)


def test_postgres_resets_and_partition_under_load(start_gateway, make_pg_db, redis_url, upstream):
    direct = make_pg_db()
    proxy = ThreadedProxy(target_port=5432)
    env = {"AICREDITS_DB_TIMEOUT": str(DB_TIMEOUT), "AICREDITS_READY_TIMEOUT": str(READY_TIMEOUT),
           "AICREDITS_REDIS_URL": redis_url, "AICREDITS_REDIS_PREFIX": f"dbfaults-{uuid.uuid4().hex[:8]}:",
           "AICREDITS_HOLD_LEASE_SECONDS": "3", "AICREDITS_SETTLE_RETRY_SECONDS": "2"}
    gateways = []
    try:
        via = proxy.dsn(PG_ADMIN_DSN, direct.rsplit("/", 1)[1])
        gateways = start_gateway.many({"db_url": via, "workers": 2, "env": env}, {"db_url": via, "env": env})
        keys = make_keys(direct, 4, 100_000_000)
        keys.append(make_keys(direct, 1, 100_000_000, rpm=100_000)[0])   # a rate-limited key: Redis in the path
        entry = gateways[0].catalog()["openai/gpt-4o-mini"]
        results: list = []
        polls: list = []
        windows: dict[str, tuple[float, float]] = {}

        async def run() -> None:
            clients = [httpx.AsyncClient(base_url=g.base_url) for g in gateways]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(load(clients, keys, results, stop)),
                     *(asyncio.create_task(readiness(c, polls, stop)) for c in clients)]
            try:
                for mode in ("down", "partition"):
                    await asyncio.sleep(1.5)
                    onset = time.monotonic()
                    await asyncio.to_thread(proxy.set_mode, mode)
                    await asyncio.sleep(OUTAGE)
                    await asyncio.to_thread(proxy.set_mode, "pass")
                    windows[mode] = (onset, time.monotonic())
                    await asyncio.sleep(5.0)      # recovery, under load
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                for c in clients:
                    await c.aclose()

        asyncio.run(run())
        calls = [res for _, res in results]

        # nothing but an answer or a 503 with Retry-After, and every 503 within the bound
        assert {r.status for r in calls} <= {200, 503}, {(r.status, r.error) for r in calls}
        refused = [r for r in calls if r.status == 503]
        assert all(r.error == "service_unavailable" and r.retry_after for r in refused)
        assert max(r.elapsed for r in refused) <= 2 * DB_TIMEOUT + SLACK, max(r.elapsed for r in refused)
        for mode, (onset, healed) in windows.items():
            during = [r for r in calls if r.started >= onset + 0.1 and r.started + r.elapsed <= healed]
            assert len(during) >= CALLERS, (mode, len(during))
            assert {r.status for r in during} == {503}, mode
            # readiness: 503 naming the database, within its own timeout
            for client in {c for c, *_ in polls}:
                down = [p for p in polls if p[0] is client and p[1] >= onset + 0.1 and p[2] <= healed]
                assert len(down) >= 2, mode
                assert all(p[3] == 503 and p[4]["db"] == "unavailable" for p in down), (mode, down)
                assert max(p[2] - p[1] for p in down) <= READY_TIMEOUT + SLACK, mode
            # recovery by itself: both gateways answer again within 3 s of the heal
            for client in {c for c, _ in results}:
                after = [res for c, res in results if c is client and res.started >= healed + 3.0
                         and res.started < healed + 5.0]
                assert after and {r.status for r in after} == {200}, (mode, [(r.status, r.error) for r in after])
                ready = [p for p in polls if p[0] is client and p[1] >= healed + 3.0 and p[1] < healed + 5.0]
                assert ready and {p[3] for p in ready} == {200}, mode

        # the books: every call billed once, what its client was told; journals replayed; holds released
        wait_no_holds(direct, 15)
        for g in gateways:
            journal = g.workdir / "settle-journal"
            assert not journal.is_dir() or not list(journal.glob("*.settle.json")), g.log()[-3000:]
        assert_books(direct, calls, lambda p, c: expected_micros(entry, p, c))
        assert verify_ledger(direct) == []
        for g in gateways:
            assert tracebacks(g.log()) == []
    finally:
        stop_all(gateways)
        proxy.stop()
