"""Requests in flight per key (infra/inflight_*.py), for the concurrency cap: counted in memory, or
in Redis shared by every process (two counters on their own connections stand for two processes),
with expiry for a process that died, and fail-open to the process's own count."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis.asyncio as aioredis

from aicredits.errors import RateLimited
from aicredits.infra.inflight_memory import MemoryInFlight
from aicredits.infra.inflight_redis import LOCAL, RedisInFlight
from aicredits.ports import KeyAuth
from aicredits.services.concurrency import KeyConcurrency
from tests.conftest import free_port


def prefix() -> str:
    return f"aicredits-test-{uuid.uuid4().hex[:10]}:"


async def test_memory_counts_each_key_up_to_its_limit():
    c = MemoryInFlight()
    tokens = [await c.enter("k", 2) for _ in range(3)]
    assert tokens[0] and tokens[1] and tokens[2] is None
    assert await c.enter("other", 2)
    await c.leave("k", tokens[0])
    assert await c.enter("k", 2)


async def test_redis_is_one_count_for_every_process(redis_url):
    p = prefix()
    one = RedisInFlight(aioredis.from_url(redis_url), p, 60)
    two = RedisInFlight(aioredis.from_url(redis_url), p, 60)
    a, b = await one.enter("k", 2), await two.enter("k", 2)
    assert a and b and a != LOCAL
    assert await one.enter("k", 2) is None and await two.enter("k", 2) is None
    await two.leave("k", a)   # any process may give a slot back
    assert await one.enter("k", 2)
    assert await one._redis.pttl(p + "inflight:k") > 50_000


async def test_redis_slots_of_a_dead_process_expire(redis_url):
    c = RedisInFlight(aioredis.from_url(redis_url), prefix(), 0.3)
    assert await c.enter("k", 1) and await c.enter("k", 1) is None
    await asyncio.sleep(0.4)   # never given back: expired
    assert await c.enter("k", 1)


async def test_without_redis_each_process_still_caps_the_key(caplog):
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    c = RedisInFlight(dead, prefix(), 60)
    with caplog.at_level(logging.WARNING, "aicredits.ratelimit"):
        first = await c.enter("k", 1)
    assert first == LOCAL and await c.enter("k", 1) is None
    assert "per-key concurrency counted per process: Redis failed" in caplog.text
    await c.leave("k", first)
    assert await c.enter("k", 1) == LOCAL


async def test_the_cap_is_a_429_with_retry_after_and_no_cap_counts_nothing():
    auth = KeyAuth("key_1", 1, "k", None)
    capped = KeyConcurrency(MemoryInFlight(), 1)
    slot = await capped.enter(auth)
    with pytest.raises(RateLimited) as refused:
        await capped.enter(auth)
    assert refused.value.status == 429 and refused.value.headers() == [(b"retry-after", b"1")]
    await capped.leave(slot)
    assert await capped.enter(auth) is not None
    free = KeyConcurrency(MemoryInFlight(), None)
    assert await free.enter(auth) is None and free.counter._counts == {}
