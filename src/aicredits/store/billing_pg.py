"""The billing hot path on PostgreSQL (asyncpg). Each operation is one transaction; holds lock
the wallet row, then the key row (always in that order, so two calls never deadlock)."""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from aicredits.ports import HoldRequest, KeyAuth, KeyRevoked, Settlement, SettleResult
from aicredits.store import billing_sql as q
from aicredits.store.db import now_ms

log = logging.getLogger("aicredits.store")

N = {name: q.numbered(getattr(q, name)) for name in (
    "FIND_KEY", "WALLET", "KEY_STATE", "HOLD_WALLET", "HOLD_KEY", "INSERT_HOLD", "DELETE_HOLD",
    "CHARGE_WALLET", "CHARGE_KEY", "INSERT_CHARGE", "INSERT_USAGE", "EXPIRED_HOLDS", "CREDITS", "KEY_CREDITS")}
WALLET_FOR_UPDATE = N["WALLET"] + " FOR UPDATE"
KEY_FOR_UPDATE = N["KEY_STATE"] + " FOR UPDATE"


class TimedPool(asyncpg.Pool):
    """asyncpg's pool, counting how long taking a connection waits (for /metrics: a pool too small
    shows as waiting before it shows as slow calls). Two clock reads per connection taken."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acquires = 0
        self.waiting = 0
        self.wait_seconds = 0.0

    async def _acquire(self, timeout):
        t = time.perf_counter()
        self.waiting += 1
        try:
            return await super()._acquire(timeout)
        finally:
            self.waiting -= 1
            self.acquires += 1
            self.wait_seconds += time.perf_counter() - t


class PostgresBilling:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 20) -> PostgresBilling:
        # asyncpg.create_pool(...) with the pool class above (create_pool takes no class)
        pool = await TimedPool(dsn, min_size=min_size, max_size=max_size, max_queries=50000,
                               max_inactive_connection_lifetime=300.0, loop=None,
                               connection_class=asyncpg.Connection, record_class=asyncpg.Record)
        return cls(pool)

    async def find_key(self, key_hash: str) -> KeyAuth | None:
        row = await self._pool.fetchrow(N["FIND_KEY"], key_hash)
        if row is None or row[4] is not None:
            return None
        return KeyAuth(row[0], row[1], row[2], row[3], row[5], row[6])

    async def reserve(self, req: HoldRequest) -> Any:
        async with self._pool.acquire() as conn, conn.transaction():
            w = await conn.fetchrow(WALLET_FOR_UPDATE, req.account_id)
            if w is None:
                raise KeyRevoked("the key's account has no wallet")
            headroom = None
            if req.key_id is not None:
                k = await conn.fetchrow(KEY_FOR_UPDATE, req.key_id)
                if k is None or k[3] is not None:
                    raise KeyRevoked("the key was revoked")
                headroom = q.key_headroom(k[0], k[1], k[2])
            plan = req.planner(w[0] - w[1], headroom)
            await conn.execute(N["HOLD_WALLET"], plan.amount, req.account_id)
            if req.key_id is not None:
                await conn.execute(N["HOLD_KEY"], plan.amount, req.key_id)
            await conn.execute(N["INSERT_HOLD"], req.call_id, req.account_id, req.key_id, plan.amount,
                               req.created_at, req.expires_at)
            return plan

    async def settle(self, s: Settlement) -> SettleResult:
        async with self._pool.acquire() as conn, conn.transaction():
            w = await conn.fetchrow(WALLET_FOR_UPDATE, s.account_id)
            row = await conn.fetchrow(N["DELETE_HOLD"], s.call_id)
            charge = s.charge
            if row is None:
                charge = max(0, min(charge, w[0] - w[1]))
                held = 0
                log.warning("settling call %s without its hold; charge capped at %d", s.call_id, charge)
            else:
                held = row[0]
                charge = min(charge, held)
            ts = now_ms()
            r = await conn.fetchrow(N["CHARGE_WALLET"], held, charge, charge, ts, s.account_id)
            bal, still_held = r[0], r[1]
            if s.key_id is not None:
                await conn.execute(N["CHARGE_KEY"], held, charge, ts, s.key_id)
            if charge:
                await conn.execute(N["INSERT_CHARGE"], s.account_id, -charge, bal, s.call_id, s.key_id, s.note, ts)
            usage = dict(s.usage, cost=charge, hold=held)
            await conn.execute(N["INSERT_USAGE"], *q.usage_values(usage))
            return SettleResult(charge, bal, bal - still_held)

    async def sweep(self, now: int) -> int:
        released = 0
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(N["EXPIRED_HOLDS"], now)
            for call_id, account_id, key_id, amount in rows:
                async with conn.transaction():
                    await conn.fetchrow(WALLET_FOR_UPDATE, account_id)
                    gone = await conn.fetchrow(N["DELETE_HOLD"], call_id)
                    if gone is None:
                        continue
                    await conn.execute(N["HOLD_WALLET"], -gone[0], account_id)
                    if key_id is not None:
                        await conn.execute(N["HOLD_KEY"], -gone[0], key_id)
                    released += 1
        return released

    async def credits(self, account_id: int, key_id: str | None) -> dict:
        async with self._pool.acquire() as conn:
            w = await conn.fetchrow(N["CREDITS"], account_id)
            k = await conn.fetchrow(N["KEY_CREDITS"], key_id) if key_id else None
            return q.credits_view(tuple(w), tuple(k) if k else None)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def holds_outstanding(self) -> tuple[int, int]:
        row = await self._pool.fetchrow("SELECT count(*), coalesce(sum(amount), 0) FROM holds")
        return int(row[0]), int(row[1])

    def pool_stats(self) -> dict:
        p = self._pool
        size = p.get_size()
        return {"size": size, "in_use": size - p.get_idle_size(), "max": p.get_max_size(),
                "waiting": getattr(p, "waiting", 0), "acquires": getattr(p, "acquires", 0),
                "wait_seconds": getattr(p, "wait_seconds", 0.0)}

    async def close(self) -> None:
        await self._pool.close()
