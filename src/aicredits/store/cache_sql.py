"""The response caches' entries and savings in the database (SQLite or PostgreSQL, one code).

Reads happen only for a key the process knows (a hit) and for the feed; writes after a
completed answer, and in the background after a hit (its LRU time, the account's savings).
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aicredits.domain.cache_entry import CacheEntry, FeedRow
from aicredits.store import billing_sql as q
from aicredits.store.db import now_ms
from aicredits.store.tables import cache_entries as t
from aicredits.store.tables import cache_savings as s

FEED_OVERLAP_MS = 5_000   # re-read this far back: a row may commit after a later one was read
FEED_BATCH = 20_000
ENTRY_COLUMNS = (t.c.key, t.c.scope, t.c.account_id, t.c.model, t.c.response, t.c.prompt_tokens,
                 t.c.completion_tokens, t.c.charge, t.c.created_at, t.c.expires_at, t.c.context, t.c.query,
                 t.c.vector, t.c.provider)


class SqlCacheStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def get(self, key: str, now: int) -> CacheEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*ENTRY_COLUMNS).where(t.c.key == key, t.c.expires_at > now))).first()
        return CacheEntry(*row) if row is not None else None

    async def touch(self, used: dict[str, tuple[int, int]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(t).where(t.c.key == bindparam("k")).values(
                last_used_at=bindparam("at"), hits=t.c.hits + bindparam("n")),
                [{"k": k, "at": at, "n": n} for k, (at, n) in used.items()])

    async def put(self, e: CacheEntry, max_entries: int) -> None:
        values = {"key": e.key, "scope": e.scope, "account_id": e.account_id, "model": e.model,
                  "provider": e.provider, "context": e.context, "query": e.query, "vector": e.vector,
                  "response": e.response, "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
                  "charge": e.charge, "hits": 0, "created_at": e.created_at, "expires_at": e.expires_at,
                  "last_used_at": e.created_at}
        async with self._engine.begin() as conn:
            stmt = self._insert(t).values(**values)
            # the same question answered again (a race, or after expiry): the newer answer wins
            await conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.key], set_={
                k: stmt.excluded[k] for k in values if k != "key"}))

    async def feed(self, cursor: int | None, now: int) -> tuple[int, list[FeedRow]]:
        since = 0 if cursor is None else max(0, cursor - FEED_OVERLAP_MS)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(t.c.key, t.c.scope, t.c.context, t.c.query, t.c.vector, t.c.expires_at, t.c.created_at)
                .where(t.c.created_at >= since, t.c.expires_at > now)
                .order_by(t.c.created_at).limit(FEED_BATCH))).all()
        newest = max((r[6] for r in rows), default=cursor or 0)
        return newest, [tuple(r[:6]) for r in rows]

    async def purge(self, account_id: int | None, model: str | None) -> int:
        stmt = delete(t)
        if account_id is not None:
            stmt = stmt.where(t.c.account_id == account_id)
        if model is not None:
            stmt = stmt.where(t.c.model == model)
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount or 0

    async def sweep(self, now: int, max_entries: int) -> int:
        """Delete expired entries, then the least recently used beyond `max_entries`."""
        async with self._engine.begin() as conn:
            gone = (await conn.execute(delete(t).where(t.c.expires_at <= now))).rowcount or 0
            count = (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            if count > max_entries:
                oldest = select(t.c.key).order_by(t.c.last_used_at, t.c.created_at).limit(count - max_entries)
                gone += (await conn.execute(delete(t).where(t.c.key.in_(oldest.scalar_subquery())))).rowcount or 0
        return gone

    async def stats(self, now: int) -> dict:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(t.c.model, func.count(), func.sum(t.c.hits), func.sum(func.length(t.c.response)),
                       func.count(t.c.vector))
                .where(t.c.expires_at > now).group_by(t.c.model).order_by(t.c.model))).all()
        models = [{"model": m, "entries": n, "hits": int(h or 0), "bytes": int(b or 0), "semantic": int(v or 0)}
                  for m, n, h, b, v in rows]
        return {"entries": sum(m["entries"] for m in models), "bytes": sum(m["bytes"] for m in models),
                "models": models}

    # ---------------------------------------------------------------- savings (per account)
    async def add_savings(self, rows: dict[int, list[int]]) -> None:
        ts = now_ms()
        async with self._engine.begin() as conn:
            for account_id, (hits, prompt, completion, saved) in sorted(rows.items()):
                stmt = self._insert(s).values(account_id=account_id, hits=hits, prompt_tokens=prompt,
                                              completion_tokens=completion, saved=saved, updated_at=ts)
                await conn.execute(stmt.on_conflict_do_update(index_elements=[s.c.account_id], set_={
                    "hits": s.c.hits + hits, "prompt_tokens": s.c.prompt_tokens + prompt,
                    "completion_tokens": s.c.completion_tokens + completion, "saved": s.c.saved + saved,
                    "updated_at": ts}))

    async def record_usage(self, rows: list[dict]) -> None:
        """usage_records rows in one transaction, with the billing store's own SQL (fast executemany)."""
        sql = q.numbered(q.INSERT_USAGE) if self._engine.dialect.name == "postgresql" else q.INSERT_USAGE
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(sql, [q.usage_values(r) for r in rows])

    async def savings(self, account_id: int) -> dict:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(s.c.hits, s.c.prompt_tokens, s.c.completion_tokens, s.c.saved)
                                      .where(s.c.account_id == account_id))).first()
        hits, prompt, completion, saved = row or (0, 0, 0, 0)
        return {"hits": hits, "prompt_tokens": prompt, "completion_tokens": completion, "saved": saved}

    async def totals(self) -> dict:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(func.sum(s.c.hits), func.sum(s.c.prompt_tokens),
                                             func.sum(s.c.completion_tokens), func.sum(s.c.saved)))).first()
        hits, prompt, completion, saved = row or (0, 0, 0, 0)
        return {"hits": int(hits or 0), "prompt_tokens": int(prompt or 0),
                "completion_tokens": int(completion or 0), "saved": int(saved or 0)}

    async def close(self) -> None:
        return None


async def savings_of(conn: AsyncConnection, account_id: int) -> dict:
    """What cache hits saved the account (the dashboard's overview; one connection's query)."""
    row = (await conn.execute(select(s.c.hits, s.c.prompt_tokens, s.c.completion_tokens, s.c.saved)
                              .where(s.c.account_id == account_id))).first()
    hits, prompt, completion, saved = row or (0, 0, 0, 0)
    return {"hits": hits, "tokens_saved": prompt + completion, "saved": saved}
