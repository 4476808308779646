"""The billing hot path on SQLite: one writer thread, group commit.

Every operation is a small function run on the writer's connection inside a SAVEPOINT; all
operations waiting when the writer wakes share one BEGIN IMMEDIATE ... COMMIT, so many
concurrent calls cost one commit. BEGIN IMMEDIATE takes SQLite's write lock first, so a
hold's read-check-update is atomic against every other process on the same file (the CLI,
other workers). WAL mode keeps readers unblocked.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aicredits.ports import HoldRequest, KeyAuth, KeyRevoked, Plan, Settlement, SettleResult, SliceView
from aicredits.store import billing_sql as q
from aicredits.store.db import SQLITE_BUSY_TIMEOUT, now_ms

log = logging.getLogger("aicredits.store")
MAX_BATCH = 256
_R = TypeVar("_R")


def drive(conn: sqlite3.Connection, steps: q.Steps[_R]) -> _R:
    """Run a shared procedure (store/billing_sql.py) on the writer's connection."""
    try:
        step = next(steps)
        while True:
            kind, sql, args = step
            if kind == q.MANY:
                conn.executemany(sql, args)
                result = None
            elif kind == q.EXEC:
                conn.execute(sql, args)
                result = None
            elif kind == q.ALL:
                result = conn.execute(sql, args).fetchall()
            else:
                result = conn.execute(sql, args).fetchone()
            step = steps.send(result)
    except StopIteration as stop:
        return stop.value


def _resolve_all(results: list) -> None:
    for fut, value, exc in results:
        if fut.cancelled():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class SqliteBilling:
    def __init__(self, path: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> None:
        self._path = path
        self._busy_timeout = busy_timeout   # seconds (AICREDITS_SQLITE_BUSY_TIMEOUT)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="aicredits-sqlite-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error:
            raise self._error

    # ---------------------------------------------------------------- the writer thread
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={round(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        while True:
            item = get()
            if item is None:
                break
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self.busy = True   # pool_stats: the writer is in a transaction
            self._execute(conn, batch)
            self.busy = False
            if stop:
                break
        conn.close()

    def _execute(self, conn: sqlite3.Connection, batch: list) -> None:
        per_loop: dict[Any, list] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            done: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Exception | None]] = []
            for fn, fut, loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = fn(conn)
                except Exception as exc:  # noqa: BLE001 - an operation's own failure (refusal, revoked key...)
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    done.append((fut, loop, None, exc))
                else:
                    conn.execute("RELEASE op")
                    done.append((fut, loop, value, None))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the transaction failed: nothing in it happened
            log.error("sqlite billing transaction failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            done = [(fut, loop, None, exc) for fn, fut, loop in batch]
        for fut, loop, value, err in done:
            per_loop.setdefault(loop, []).append((fut, value, err))
        for loop, results in per_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, results)
            except RuntimeError:  # that loop is closed
                pass

    def _submit(self, fn: Callable[[sqlite3.Connection], _R]) -> asyncio.Future[_R]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((fn, fut, loop))
        return fut

    # ---------------------------------------------------------------- operations
    async def find_key(self, key_hash: str) -> KeyAuth | None:
        def op(conn: sqlite3.Connection) -> KeyAuth | None:
            row = conn.execute(q.FIND_KEY, (key_hash,)).fetchone()
            return q.key_auth(row)
        return await self._submit(op)

    async def reserve(self, req: HoldRequest) -> Plan:
        def op(conn: sqlite3.Connection) -> Plan:
            w = conn.execute(q.WALLET, (req.account_id,)).fetchone()
            if w is None:
                raise KeyRevoked("the key's account has no wallet")
            headroom = None
            if req.key_id is not None:
                k = conn.execute(q.KEY_STATE, (req.key_id,)).fetchone()
                if k is None or k[3] is not None:
                    raise KeyRevoked("the key was revoked")
                headroom = q.key_headroom(k[0], k[1], k[2])
            plan = req.planner(w[0] - w[1], headroom)
            conn.execute(q.HOLD_WALLET, (plan.amount, req.account_id))
            if req.key_id is not None:
                conn.execute(q.HOLD_KEY, (plan.amount, req.key_id))
            conn.execute(q.INSERT_HOLD, (req.call_id, req.account_id, req.key_id, plan.amount,
                                         req.created_at, req.expires_at))
            return plan
        return await self._submit(op)

    async def record(self, rows: list[dict]) -> None:
        return await self._submit(lambda conn: drive(conn, q.record_steps(rows)))

    async def settle(self, s: Settlement) -> SettleResult:
        return await self._submit(lambda conn: drive(conn, q.settle_steps(s, now_ms())))

    async def renew(self, expires_at: int, call_ids: list[str], progress: list[tuple[str, int, str]]) -> None:
        await self._submit(lambda conn: drive(conn, q.renew_steps(expires_at, call_ids, progress)))

    async def sweep(self, now: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            rows = conn.execute(q.EXPIRED_HOLDS, (now,)).fetchall()
            return sum(1 for call_id, account_id in rows if drive(conn, q.sweep_one_steps(call_id, account_id, now)))
        return await self._submit(op)

    # ---------------------------------------------------------------- quota slices (services/quota.py)
    async def grant(self, slice_id: str, account_id: int, key_id: str | None, want: Callable[[int, int | None], int], now: int,
                    expires_at: int) -> SliceView:
        return await self._submit(lambda conn: drive(conn, q.grant_steps(slice_id, account_id, key_id, want, now,
                                                                          expires_at)))

    async def charge_slice(self, slice_id: str, account_id: int, key_id: str | None,
                           items: list[Settlement], close: bool = False) -> SliceView:
        return await self._submit(lambda conn: drive(conn, q.charge_slice_steps(slice_id, account_id, key_id, items,
                                                                                 now_ms(), close)))

    async def shrink_slice(self, slice_id: str, account_id: int, key_id: str | None, amount: int) -> SliceView:
        return await self._submit(lambda conn: drive(conn, q.shrink_slice_steps(slice_id, account_id, key_id, amount)))

    async def release_slice(self, slice_id: str, account_id: int) -> int:
        return await self._submit(lambda conn: drive(conn, q.release_slice_steps(slice_id, account_id)))

    async def credits(self, account_id: int, key_id: str | None) -> dict[str, Any]:
        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            w = conn.execute(q.CREDITS, (account_id,)).fetchone()
            k = conn.execute(q.KEY_CREDITS, (key_id,)).fetchone() if key_id else None
            return q.credits_view(w, k)
        return await self._submit(op)

    async def ping(self) -> None:
        await self._submit(lambda conn: conn.execute("SELECT 1").fetchone())

    async def holds_outstanding(self) -> tuple[int, int]:
        row = await self._submit(lambda conn: conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM holds").fetchone())
        return int(row[0]), int(row[1])

    def pool_stats(self) -> dict:
        """SQLite's "pool" is the one writer thread: operations queued for it are waiting."""
        return {"size": 1, "in_use": int(self.busy), "max": 1, "waiting": self._queue.qsize()}

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)
