"""The billing hot path on PostgreSQL (asyncpg). Each operation is one transaction; holds lock
the wallet row, then the key row (always in that order, so two calls never deadlock).

Every operation is bounded by `timeout` seconds (AICREDITS_DB_TIMEOUT): waiting for a pooled
connection, connecting, each statement, and the operation as a whole. A database that resets
connections or stops answering (a partition) makes the operation raise StoreUnavailable within
that bound, never hang; a connection a timeout interrupted is cancelled or closed by asyncpg, and
the pool opens new ones once the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from aicredits.ports import (
    HoldRequest,
    KeyAuth,
    KeyRevoked,
    Plan,
    Settlement,
    SettleResult,
    SliceView,
    StoreUnavailable,
)
from aicredits.store import billing_sql as q
from aicredits.store.db import now_ms

log = logging.getLogger("aicredits.store")
_R = TypeVar("_R")
# a pooled connection (asyncpg hands out proxies of its connections)
Conn = asyncpg.Connection | PoolConnectionProxy

N = {name: q.numbered(getattr(q, name)) for name in (
    "FIND_KEY", "WALLET", "KEY_STATE", "HOLD_WALLET", "HOLD_KEY", "INSERT_HOLD", "EXPIRED_HOLDS", "CREDITS",
    "KEY_CREDITS")}
WALLET_FOR_UPDATE = N["WALLET"] + " FOR UPDATE"
KEY_FOR_UPDATE = N["KEY_STATE"] + " FOR UPDATE"
_SQL: dict[tuple[str, str], str] = {}
# the database is unreachable, not the request wrong: a broken or refused connection, a timeout,
# a server shutting down or out of connections
UNREACHABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
               asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)


def _sql(kind: str, sql: str) -> str:
    out = _SQL.get((kind, sql))
    if out is None:
        out = _SQL[(kind, sql)] = q.numbered(sql) + (" FOR UPDATE" if kind == q.LOCK else "")
    return out


async def drive(conn: Conn, steps: q.Steps[_R]) -> _R:
    """Run a shared procedure (store/billing_sql.py) on this connection (in its transaction)."""
    try:
        step = next(steps)
        while True:
            kind, sql, args = step
            text = _sql(kind, sql)
            result: Any
            if kind == q.MANY:
                await conn.executemany(text, args)
                result = None
            elif kind == q.EXEC:
                await conn.execute(text, *args)
                result = None
            elif kind == q.ALL:
                result = await conn.fetch(text, *args)
            else:
                result = await conn.fetchrow(text, *args)
            step = steps.send(result)
    except StopIteration as stop:
        return stop.value


async def _clean(conn: Conn) -> None:
    """The pool's reset: nothing to undo. Every operation runs in a transaction that has ended
    (asyncpg rolls back one that has not) and leaves no session state: no LISTEN, advisory lock,
    temporary table or SET."""


def _close(conn: Conn) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):   # closed already: the pool has it back
        conn.terminate()


def _unavailable(exc: BaseException, limit: float) -> StoreUnavailable:
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"the database did not answer within {limit:g} s")
    return StoreUnavailable(f"the database connection failed ({type(exc).__name__})")


class TimedPool(asyncpg.Pool):
    """asyncpg's pool, counting how long taking a connection waits (for /metrics: a pool too small
    shows as waiting before it shows as slow calls). Two clock reads per connection taken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - asyncpg.Pool's
        super().__init__(*args, **kwargs)
        self.acquires = 0
        self.waiting = 0
        self.wait_seconds = 0.0

    async def _acquire(self, timeout: float | None) -> PoolConnectionProxy:
        t = time.perf_counter()
        self.waiting += 1
        try:
            return await super()._acquire(timeout)  # type: ignore[misc]  # asyncpg's own, not in its stubs
        finally:
            self.waiting -= 1
            self.acquires += 1
            self.wait_seconds += time.perf_counter() - t


class PostgresBilling:
    def __init__(self, pool: asyncpg.Pool, timeout: float = 5.0) -> None:
        self._pool = pool
        self.timeout = timeout

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 20,
                      timeout: float = 5.0) -> PostgresBilling:
        # `timeout` bounds connecting, `command_timeout` each statement (and asyncpg's cancelling of
        # it); `reset`: returning a connection to the pool does no I/O (see `_clean`), so it never
        # waits on a database that stopped answering
        # asyncpg.create_pool(...) with the pool class above (create_pool takes no class)
        pool = await TimedPool(dsn, min_size=min_size, max_size=max_size, max_queries=50000,
                               max_inactive_connection_lifetime=300.0, loop=None,
                               connection_class=asyncpg.Connection, record_class=asyncpg.Record,
                               timeout=timeout, command_timeout=timeout, reset=_clean)
        return cls(pool, timeout)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        """A pooled connection for one operation, all of it within the store's timeout;
        StoreUnavailable when the database cannot be reached or does not answer in time. A
        connection an operation left in an unknown state (a timeout, a broken connection, a
        cancelled call) is closed, not returned to the pool."""
        limit = self.timeout
        deadline = asyncio.get_running_loop().time() + limit
        try:
            conn = await self._pool.acquire(timeout=limit)
        except UNREACHABLE as exc:
            raise _unavailable(exc, limit) from exc
        try:
            async with asyncio.timeout_at(deadline):
                yield conn
        except UNREACHABLE as exc:
            _close(conn)
            raise _unavailable(exc, limit) from exc
        except asyncio.CancelledError:
            _close(conn)
            raise
        finally:
            await self._pool.release(conn)

    async def find_key(self, key_hash: str) -> KeyAuth | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(N["FIND_KEY"], key_hash)
        return q.key_auth(tuple(row) if row is not None else None)

    async def reserve(self, req: HoldRequest) -> Plan:
        async with self._conn() as conn, conn.transaction():
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
        async with self._conn() as conn, conn.transaction():
            return await drive(conn, q.settle_steps(s, now_ms()))

    async def renew(self, expires_at: int, call_ids: list[str], progress: list[tuple[str, int, str]]) -> None:
        async with self._conn() as conn, conn.transaction():
            await drive(conn, q.renew_steps(expires_at, call_ids, progress))

    async def record(self, rows: list[dict]) -> None:
        async with self._conn() as conn, conn.transaction():
            await drive(conn, q.record_steps(rows))

    async def sweep(self, now: int) -> int:
        async with self._conn() as conn:
            expired = await conn.fetch(N["EXPIRED_HOLDS"], now)
        swept = 0
        for call_id, account_id in expired:   # one hold per transaction: one wallet lock at a time
            async with self._conn() as conn, conn.transaction():
                swept += bool(await drive(conn, q.sweep_one_steps(call_id, account_id, now)))
        return swept

    # ---------------------------------------------------------------- quota slices (services/quota.py)
    async def grant(self, slice_id: str, account_id: int, key_id: str | None, want: Callable[[int, int | None], int], now: int,
                    expires_at: int) -> SliceView:
        async with self._conn() as conn, conn.transaction():
            return await drive(conn, q.grant_steps(slice_id, account_id, key_id, want, now, expires_at))

    async def charge_slice(self, slice_id: str, account_id: int, key_id: str | None,
                           items: list[Settlement], close: bool = False) -> SliceView:
        async with self._conn() as conn, conn.transaction():
            return await drive(conn, q.charge_slice_steps(slice_id, account_id, key_id, items, now_ms(), close))

    async def shrink_slice(self, slice_id: str, account_id: int, key_id: str | None, amount: int) -> SliceView:
        async with self._conn() as conn, conn.transaction():
            return await drive(conn, q.shrink_slice_steps(slice_id, account_id, key_id, amount))

    async def release_slice(self, slice_id: str, account_id: int) -> int:
        async with self._conn() as conn, conn.transaction():
            return await drive(conn, q.release_slice_steps(slice_id, account_id))

    async def credits(self, account_id: int, key_id: str | None) -> dict:
        async with self._conn() as conn:
            w = await conn.fetchrow(N["CREDITS"], account_id)
            k = await conn.fetchrow(N["KEY_CREDITS"], key_id) if key_id else None
            assert w is not None        # an account's wallet is made with it
            return q.credits_view(tuple(w), tuple(k) if k else None)

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def holds_outstanding(self) -> tuple[int, int]:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT count(*), coalesce(sum(amount), 0) FROM holds")
        assert row is not None      # an aggregate's one row
        return int(row[0]), int(row[1])

    def pool_stats(self) -> dict:
        p = self._pool
        size = p.get_size()
        return {"size": size, "in_use": size - p.get_idle_size(), "max": p.get_max_size(),
                "waiting": getattr(p, "waiting", 0), "acquires": getattr(p, "acquires", 0),
                "wait_seconds": getattr(p, "wait_seconds", 0.0)}

    async def close(self) -> None:
        try:   # connections a partition holds are not waited for past the timeout
            await asyncio.wait_for(self._pool.close(), self.timeout)
        except (TimeoutError, *UNREACHABLE):
            self._pool.terminate()
