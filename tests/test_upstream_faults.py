"""Upstream faults across processes, on the scale-out mode (PostgreSQL + Redis; one `serve
--workers 2` and one separate `serve`, three gateway processes in all, each with its own retries
and breakers): hangs, connections reset mid-body, a slow drip (one byte a second), a 429 storm.
Every call ends within its bound, retries are bounded, breakers open (the failing deployment is
left alone) and close again once it recovers; every call is billed by its end state."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import expected_micros, stop_all
from tests.fakes.openai_upstream import FakeOpenAI, Scenario
from tests.loadgen import (
    FAKE_PROMPT,
    Result,
    assert_books,
    fetch,
    make_keys,
    plain_call,
    stream_call,
    verify_ledger,
    wait_no_holds,
    words,
)

FIRST_BYTE = 1.5        # AICREDITS_UPSTREAM_TIMEOUT: every attempt of a call within it
IDLE = 1.5              # AICREDITS_STREAM_IDLE_TIMEOUT: a non-stream body is read within it
MAX_CALL = 4.0          # AICREDITS_MAX_REQUEST_SECONDS
RETRIES = 2
BREAKER_FAILURES = 3
COOLDOWN = 2.0
SLACK = 1.5             # a loaded 2-core machine

CONFIG = """
[providers.secondary]
kind = "openai_compatible"
base_url = "{b}"
api_key_env = "SECONDARY_KEY"

[[models]]
id = "pool/chat"
name = "Pool chat"
provider = "openai"
upstream_id = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 0.15
output_cost_per_1m = 0.60
deployments = [{{provider = "openai", weight = 1000}}, {{provider = "secondary", weight = 1}}]
"""


@pytest.fixture(scope="module")
def fakes():
    a = FakeOpenAI(api_key="sk-primary-upstream").start()
    b = FakeOpenAI(api_key="sk-secondary-upstream").start()
    yield a, b
    a.stop()
    b.stop()


async def call(client: httpx.AsyncClient, key: str, model: str, stream: bool) -> Result:
    fn = stream_call if stream else plain_call
    return await fn(client, key, f"up-{uuid.uuid4().hex[:10]}", model=model, timeout=30)


def test_upstream_faults_across_processes(start_gateway, make_pg_db, redis_url, fakes, tmp_path):
    a, b = fakes
    for f in fakes:
        f.reset()
    dsn = make_pg_db()
    path = tmp_path / "aicredits.toml"
    path.write_text(CONFIG.format(b=b.base_url))
    # the primary deployment is the built-in openai provider, at fake `a`
    env = {"AICREDITS_CONFIG": str(path), "OPENAI_BASE_URL": a.base_url, "OPENAI_API_KEY": a.api_key,
           "SECONDARY_KEY": b.api_key,
           "AICREDITS_REDIS_URL": redis_url, "AICREDITS_REDIS_PREFIX": f"upfaults-{uuid.uuid4().hex[:8]}:",
           "AICREDITS_RETRIES": str(RETRIES), "AICREDITS_RETRY_BASE_DELAY": "0.05", "AICREDITS_RETRY_MAX_DELAY": "0.2",
           "AICREDITS_BREAKER_FAILURES": str(BREAKER_FAILURES), "AICREDITS_BREAKER_COOLDOWN": str(COOLDOWN),
           "AICREDITS_UPSTREAM_TIMEOUT": str(FIRST_BYTE), "AICREDITS_STREAM_IDLE_TIMEOUT": str(IDLE),
           "AICREDITS_MAX_REQUEST_SECONDS": str(MAX_CALL)}
    gateways = start_gateway.many({"db_url": dsn, "workers": 2, "env": env}, {"db_url": dsn, "env": env})
    try:
        keys = [k["key"] for k in make_keys(dsn, 3, 100_000_000)]
        entry = gateways[0].catalog()["openai/gpt-4o-mini"]
        results: list[Result] = []

        async def run() -> dict:
            clients = [httpx.AsyncClient(base_url=g.base_url) for g in gateways]
            out: dict = {}

            async def batch(name: str, n: int, model: str = "openai/gpt-4o-mini", stream=None) -> list[Result]:
                got = await asyncio.gather(*(call(clients[i % 2], keys[i % 3], model,
                                                  (i % 2 == 1) if stream is None else stream) for i in range(n)))
                results.extend(got)
                out[name] = got
                return got

            try:
                # hangs: no head ever comes; asked once each (it may be working), 504 at the first-byte bound
                a.enqueue(*[Scenario(hang=True) for _ in range(6)])
                await batch("hang", 6)
                out["hang_requests"] = len(a.chat_requests())
                # reset mid-body: streams after 3 deltas, plain answers after 40 bytes of their JSON
                a.reset()
                a.enqueue(*[Scenario(content=words(8), cut_after=3) for _ in range(3)])
                await batch("reset_stream", 3, stream=True)
                a.enqueue(*[Scenario(reset_after_bytes=40) for _ in range(3)])
                await batch("reset_plain", 3, stream=False)
                out["reset_requests"] = len(a.chat_requests())
                # a slow drip, one byte a second: plain answers at the body-read bound, streams at the call's
                a.reset()
                a.enqueue(*[Scenario(drip=1.0) for _ in range(4)])
                await batch("drip", 4)
                out["drip_requests"] = len(a.chat_requests())
                # a 429 storm on the primary deployment of pool/chat: each process retries a bounded
                # number of times, falls back to the secondary, opens its breaker and stops asking
                a.reset()
                a.enqueue(*[Scenario(status=429) for _ in range(1000)])
                await batch("storm1", 18, model="pool/chat")
                out["storm_requests"] = len(a.chat_requests())
                await batch("storm2", 9, model="pool/chat")
                out["storm_requests_open"] = len(a.chat_requests()) - out["storm_requests"]
                # the storm is over; after the cooldown each process tries the primary again and closes its breaker
                a.reset()
                await asyncio.sleep(COOLDOWN + 0.5)
                await batch("recovered", 9, model="pool/chat")
            finally:
                for c in clients:
                    await c.aclose()
            return out

        out = asyncio.run(run())

        hang = out["hang"]
        assert {(r.status, r.error) for r in hang} == {(504, "upstream_timeout")}
        assert max(r.elapsed for r in hang) <= FIRST_BYTE + SLACK
        assert out["hang_requests"] == 6                       # never retried

        for r in out["reset_stream"]:                           # what arrived, then the cut event
            assert r.status == 200 and r.properly_cut and len(r.pieces) == 3, r
            assert r.cut["type"] == "upstream_error"
        assert {(r.status, r.error) for r in out["reset_plain"]} == {(502, "upstream_error")}
        assert out["reset_requests"] == 6                      # a broken-off answer is never asked again

        for r in out["drip"]:
            bound = MAX_CALL if r.stream else IDLE
            assert r.elapsed <= bound + SLACK, (r, bound)
            if r.stream:                                        # cut at the call's limit; nothing delivered
                assert r.status == 200 and r.properly_cut and r.cut["type"] == "upstream_timeout" and not r.pieces, r
            else:
                assert (r.status, r.error) == (504, "upstream_timeout"), r
        assert out["drip_requests"] == 4

        # the storm: every call answered by the secondary; the primary asked a bounded number of times
        # (at most RETRIES + 1 per call, and once each process's breaker is open, not at all)
        for name in ("storm1", "storm2", "recovered"):
            assert {(r.status, r.error) for r in out[name]} == {(200, None)}, name
        assert out["storm_requests"] <= 18 * (RETRIES + 1), out["storm_requests"]
        assert out["storm_requests_open"] == 0
        deployments = {row["request_id"]: row["deployment"] for row in fetch(dsn, "SELECT request_id, deployment "
                                                                                  "FROM usage_records")}
        assert {deployments[r.rid] for r in out["storm2"]} == {"secondary:gpt-4o-mini"}
        recovered = [deployments[r.rid] for r in out["recovered"]]
        assert recovered.count("openai:gpt-4o-mini") >= 6, recovered   # the breakers closed again

        # billed by end state: failures before output nothing; cut streams prompt + delivered
        rows = assert_books(dsn, results, lambda p, c: expected_micros(entry, p, c))
        for r in out["hang"] + out["reset_plain"] + out["drip"]:
            assert rows.get(r.rid, {"cost": 0})["cost"] == 0
        assert all(rows[r.rid]["prompt_tokens"] == FAKE_PROMPT for r in out["storm1"])
        wait_no_holds(dsn, 5)
        assert verify_ledger(dsn) == []
    finally:
        stop_all(gateways)
        for f in fakes:
            f.reset()
