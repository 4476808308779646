"""The response caches' entries in Redis, shared by every gateway process (scaled out).

  <prefix>cache:e:<key>       a hash: the entry (expires with it: PEXPIREAT)
  <prefix>cache:lru           a sorted set: key -> last use (ms), for the size bound
  <prefix>cache:a:<account>   a set of the account's keys (purge by account)
  <prefix>cache:m:<model>     a set of the model's keys (purge by model)
  <prefix>cache:feed          a stream of new entries (key, scope, context, query, vector,
                              expiry) that every process follows into its in-process index

A Redis that fails makes the call a miss (services/cache.py); nothing here retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

from aicredits.domain.cache_entry import CacheEntry, FeedRow

FIELDS = ("scope", "account_id", "model", "response", "prompt_tokens", "completion_tokens", "charge",
          "created_at", "expires_at", "context", "query", "vector", "provider")
INTS = {"account_id", "prompt_tokens", "completion_tokens", "charge", "created_at", "expires_at"}
TEXTS = {"scope", "model", "context", "query", "provider"}


def _entry(key: str, h: dict[bytes, bytes]) -> CacheEntry:
    v: dict[str, object] = {}
    for f in FIELDS:
        raw = h.get(f.encode())
        if f in INTS:
            v[f] = int(raw or b"")
        elif f in TEXTS:
            v[f] = raw.decode() if raw else (None if f in ("context", "query") else "")
        else:
            v[f] = raw if raw else None
    return CacheEntry(key=key, **v)  # type: ignore[arg-type]  # each field read by its type above


class RedisCacheStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        # redis-py types each reply as `bytes | str` (it cannot know decode_responses); this
        # client's replies are bytes, read as such below
        self._r: Any = redis
        self._p = prefix + "cache:"

    async def get(self, key: str, now: int) -> CacheEntry | None:
        h = await self._r.hgetall(self._p + "e:" + key)
        if not h or int(h[b"expires_at"]) <= now:
            return None
        return _entry(key, h)

    async def touch(self, used: dict[str, tuple[int, int]]) -> None:
        await self._r.zadd(self._p + "lru", {k: at for k, (at, _n) in used.items()}, xx=True)

    async def put(self, e: CacheEntry, max_entries: int) -> None:
        p = self._p
        mapping = {f: getattr(e, f) for f in FIELDS if getattr(e, f) is not None}
        feed = {"key": e.key, "scope": e.scope, "expires_at": e.expires_at}
        if e.context is not None and e.vector is not None:
            feed.update(context=e.context, query=e.query or "", vector=e.vector)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(p + "e:" + e.key)
            pipe.hset(p + "e:" + e.key, mapping=mapping)
            pipe.pexpireat(p + "e:" + e.key, e.expires_at)
            pipe.zadd(p + "lru", {e.key: e.created_at})
            pipe.sadd(p + f"a:{e.account_id}", e.key)
            pipe.sadd(p + "m:" + e.model, e.key)
            pipe.xadd(p + "feed", feed, maxlen=max_entries, approximate=True)
            pipe.zcard(p + "lru")
            *_, count = await pipe.execute()
        if count > max_entries:
            await self._evict(count - max_entries)

    async def _evict(self, n: int) -> int:
        oldest = await self._r.zpopmin(self._p + "lru", n)
        if not oldest:
            return 0
        return await self._r.delete(*[self._p + "e:" + k.decode() for k, _ in oldest])

    async def feed(self, cursor: str | bytes | None, now: int) -> tuple[str | bytes, list[FeedRow]]:
        got = await self._r.xread({self._p + "feed": cursor or "0"}, count=20_000)
        rows: list[FeedRow] = []
        for _stream, items in got or ():
            for item_id, f in items:
                cursor = item_id
                exp = int(f[b"expires_at"])
                if exp <= now:
                    continue
                ctx = f.get(b"context")
                rows.append((f[b"key"].decode(), f[b"scope"].decode(), ctx.decode() if ctx else None,
                             f[b"query"].decode() if ctx else None, f.get(b"vector"), exp))
        return cursor or "0", rows

    async def purge(self, account_id: int | None, model: str | None) -> int:
        p = self._p
        if account_id is None and model is None:
            keys = [k async for k in self._r.scan_iter(match=p + "*", count=1000)]
            entries = sum(1 for k in keys if k.startswith((p + "e:").encode()))
            for i in range(0, len(keys), 500):
                await self._r.delete(*keys[i:i + 500])
            return entries
        sets = ([p + f"a:{account_id}"] if account_id is not None else []) + \
               ([p + "m:" + model] if model is not None else [])
        members = await (self._r.sinter(sets) if len(sets) > 1 else self._r.smembers(sets[0]))
        keys = [m.decode() for m in members]
        gone = 0
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            gone += await self._r.delete(*[p + "e:" + k for k in chunk])
            await self._r.zrem(p + "lru", *chunk)
            for s in sets:
                await self._r.srem(s, *chunk)
        return gone

    async def sweep(self, now: int, max_entries: int) -> int:
        """Forget the size-bound entries of keys that expired, then evict the least recently used."""
        p = self._p
        oldest = await self._r.zrange(p + "lru", 0, 999)
        gone = 0
        if oldest:
            async with self._r.pipeline(transaction=False) as pipe:
                for k in oldest:
                    pipe.exists(p + "e:" + k.decode())
                alive = await pipe.execute()
            dead = [k for k, a in zip(oldest, alive, strict=True) if not a]
            if dead:
                gone += await self._r.zrem(p + "lru", *dead)
        count = await self._r.zcard(p + "lru")
        if count > max_entries:
            gone += await self._evict(count - max_entries)
        return gone

    async def stats(self, now: int) -> dict:
        p = self._p
        models = []
        async for k in self._r.scan_iter(match=p + "m:*", count=1000):
            members = await self._r.smembers(k)
            async with self._r.pipeline(transaction=False) as pipe:
                for m in members:
                    pipe.exists(p + "e:" + m.decode())
                n = sum(await pipe.execute()) if members else 0
            if n:
                models.append({"model": k.decode()[len(p) + 2:], "entries": n})
        models.sort(key=lambda m: m["model"])
        return {"entries": sum(m["entries"] for m in models), "models": models}

    async def close(self) -> None:
        return None
