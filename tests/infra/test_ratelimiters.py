"""The two rate limiters (infra/): Redis's Lua script decides exactly as domain/ratelimit.py does,
and fails open; the in-process one is domain/ratelimit.py on the wall clock."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aicredits.domain.ratelimit import decide
from aicredits.infra.ratelimit_memory import MemoryRateLimiter
from aicredits.infra.ratelimit_redis import RedisRateLimiter
from tests.conftest import free_port

HOUR = 3600      # the longest window: a roll between seeding a hash and checking it is rare


@pytest.fixture
def client(redis_url):
    """A client for this test's event loop (its connections are made on first use)."""
    return aioredis.from_url(redis_url)


def prefix() -> str:
    return f"aicredits-test-{uuid.uuid4().hex[:10]}:"


async def test_redis_counts_requests_and_tokens(client):
    p = prefix()
    lim = RedisRateLimiter(client, p, 60)
    for _ in range(3):
        assert await lim.admit("key_a", 3, None) is None
    refused = await lim.admit("key_a", 3, None)
    assert refused.limits == (("rpm", 3),) and 1 <= refused.retry_after <= 120
    assert await lim.admit("key_b", 3, None) is None          # another key, its own counter
    assert await lim.admit("key_c", None, 100) is None
    await lim.add_tokens("key_c", 100)
    refused = await lim.admit("key_c", None, 100)
    assert refused.limits == (("tpm", 100),)
    keys = sorted([k.decode() async for k in client.scan_iter(match=p + "*")])
    assert keys == [f"{p}ratelimit:key_{x}" for x in "abc"]
    assert 0 < await client.pttl(keys[0]) <= 121_000


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rp=st.integers(0, 50), rc=st.integers(0, 50), tp=st.integers(0, 5000), tc=st.integers(0, 5000),
       rpm=st.one_of(st.none(), st.integers(1, 60)), tpm=st.one_of(st.none(), st.integers(1, 6000)))
@example(rp=0, rc=3, tp=0, tc=0, rpm=4, tpm=None)       # the boundaries: last request that fits,
@example(rp=0, rc=4, tp=0, tc=0, rpm=4, tpm=None)       # the first that does not
@example(rp=0, rc=0, tp=0, tc=99, rpm=None, tpm=100)
@example(rp=0, rc=0, tp=0, tc=100, rpm=None, tpm=100)
@example(rp=0, rc=0, tp=0, tc=0, rpm=1, tpm=1)
async def test_the_lua_script_decides_as_the_domain_rules(client, rp, rc, tp, tc, rpm, tpm):
    lim = RedisRateLimiter(client, prefix(), HOUR)
    key = lim._prefix + "key_x"
    sec, usec = await client.time()
    index = (sec * 1000 + usec // 1000) // (HOUR * 1000)
    await client.hset(key, mapping={"w": index, "rc": rc, "rp": rp, "tc": tc, "tp": tp})
    ok, elapsed, seen, *_ = await lim._check(keys=[key], args=[HOUR * 1000, rpm or 0, tpm or 0])
    await client.delete(key)
    if seen != rc:
        return   # the hour turned between seeding and checking
    expected = decide(elapsed, HOUR * 1000, rpm, tpm, rp, rc, tp, tc)
    assert bool(ok) == (expected is None)


async def test_redis_down_fails_open_and_backs_off(caplog):
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    lim = RedisRateLimiter(dead, prefix(), 60)
    with caplog.at_level(logging.WARNING, logger="aicredits.ratelimit"):
        assert await lim.admit("key_a", 1, None) is None
        t = time.perf_counter()
        for _ in range(100):          # within a second of the failure Redis is not asked again
            assert await lim.admit("key_a", 1, None) is None
            await lim.add_tokens("key_a", 10)
        assert time.perf_counter() - t < 0.05
    warnings = [r for r in caplog.records if "rate limits not enforced" in r.getMessage()]
    assert len(warnings) == 1         # once per outage, not once per call
    await dead.aclose()


async def test_memory_limiter_counts_per_key():
    lim = MemoryRateLimiter(60)
    assert [await lim.admit("k", 2, None) for _ in range(2)] == [None, None]
    assert (await lim.admit("k", 2, None)).limits == (("rpm", 2),)
    assert await lim.admit("other", 2, None) is None
    await lim.add_tokens("t", 10)
    assert (await lim.admit("t", None, 10)).limits == (("tpm", 10),)
