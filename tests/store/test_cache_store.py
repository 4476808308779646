"""Migration 0005_cache and the SQL cache store on SQLite and PostgreSQL: entries, the feed,
LRU eviction, purge, savings, and an account's entries going with the account."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from aicredits.domain.cache_entry import CacheEntry
from aicredits.store.cache_sql import SqlCacheStore
from aicredits.store.db import make_engine, migrate
from aicredits.store.tables import accounts, cache_entries, cache_savings


def entry(key: str, account: int, model: str = "openai/gpt-4o-mini", at: int = 1_000, ttl: int = 10_000,
          **extra) -> CacheEntry:
    return CacheEntry(key=key, scope=f"a:{account}", account_id=account, model=model, response=b'{"x":1}',
                      prompt_tokens=3, completion_tokens=4, charge=99, created_at=at, expires_at=at + ttl, **extra)


async def test_the_store_on_both_databases(db_url):
    engine = make_engine(db_url)
    await migrate(engine, db_url)
    try:
        async with engine.begin() as conn:
            for i in (1, 2):
                await conn.execute(insert(accounts).values(id=i, email=f"u{i}@example.com", name="", role="user",
                                                           created_at=0))
        store = SqlCacheStore(engine)
        await store.put(entry("k1", 1, at=1_000), 10)
        await store.put(entry("k2", 1, model="openai/gpt-4o", at=1_001, context="c" * 64, query="q",
                              vector=b"\x00" * 8), 10)
        await store.put(entry("k3", 2, at=1_002), 10)
        got = await store.get("k2", 2_000)
        assert (got.scope, got.model, got.query, got.vector, got.charge) == ("a:1", "openai/gpt-4o", "q", b"\0" * 8, 99)
        assert await store.get("k2", 20_000) is None            # expired: never read
        cursor, rows = await store.feed(None, 2_000)
        assert [r[0] for r in rows] == ["k1", "k2", "k3"] and cursor == 1_002
        # LRU: k1 was used last; of the three the least recently used (k2) is evicted beyond 2
        await store.touch({"k1": (5_000, 2)})
        assert await store.sweep(2_000, 2) == 1
        assert {r[0] for r in (await store.feed(None, 2_000))[1]} == {"k1", "k3"}
        assert await store.sweep(20_000, 10) == 2                # expired ones go
        await store.put(entry("k4", 1, at=30_000), 10)
        await store.put(entry("k5", 2, at=30_000), 10)
        assert await store.purge(1, None) == 1 and await store.purge(None, "openai/gpt-4o-mini") == 1
        await store.add_savings({1: [2, 10, 20, 300]})
        await store.add_savings({1: [1, 1, 1, 1], 2: [1, 0, 0, 5]})
        assert await store.savings(1) == {"hits": 3, "prompt_tokens": 11, "completion_tokens": 21, "saved": 301}
        assert (await store.totals())["saved"] == 306
        # an account deleted takes its entries and savings with it
        await store.put(entry("k6", 2, at=30_000), 10)
        async with engine.begin() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == 2))
        async with engine.connect() as conn:
            assert (await conn.execute(select(cache_entries.c.key))).all() == []
            assert [r[0] for r in (await conn.execute(select(cache_savings.c.account_id))).all()] == [1]
    finally:
        await engine.dispose()
