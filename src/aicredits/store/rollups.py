"""Per-day sums of an account's usage records and ledger entries, in a time zone: computed
with GROUP BY over an indexed time range, and kept for closed days in usage_daily /
ledger_daily (services/history.py decides which days are closed and when to roll up).

Grouping is by `(created_at + offset) // DAY_MS`: the caller passes time ranges of one UTC
offset each (domain/days.py `segments`), so every row lands in its local day."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.domain.days import DAY_MS
from aicredits.store.tables import ledger_daily, ledger_entries, rollup_state, usage_daily, usage_records

LE = ledger_entries.c
UR = usage_records.c
USAGE_SUMS = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "cost", "latency_ms")


# ---------------------------------------------------------------- from the rows themselves
async def usage_by_day(conn: AsyncConnection, account_id: int, lo: int, hi: int, offset: int) -> list[tuple]:
    """(day, model, requests, errors, cache_hits, prompt_tokens, completion_tokens, cost,
    latency_ms) for created_at in [lo, hi), all of one UTC offset."""
    day = ((UR.created_at + offset) // DAY_MS).label("day")
    q = (select(day, UR.model, func.count(), func.sum(case((UR.status >= 400, 1), else_=0)),
                func.sum(case((UR.cache == "hit", 1), else_=0)), func.sum(UR.prompt_tokens),
                func.sum(UR.completion_tokens), func.sum(UR.cost), func.sum(UR.latency_ms))
         .where(UR.account_id == account_id, UR.created_at >= lo, UR.created_at < hi)
         .group_by(day, UR.model))
    return [tuple(int(v) if i != 1 else v for i, v in enumerate(r)) for r in (await conn.execute(q)).all()]


async def ledger_by_day(conn: AsyncConnection, account_id: int, lo: int, hi: int, offset: int) -> list[tuple]:
    """(day, kind, entries, amount, last_id) for created_at in [lo, hi), all of one offset."""
    day = ((LE.created_at + offset) // DAY_MS).label("day")
    q = (select(day, LE.kind, func.count(), func.sum(LE.amount), func.max(LE.id))
         .where(LE.account_id == account_id, LE.created_at >= lo, LE.created_at < hi)
         .group_by(day, LE.kind))
    return [(int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4])) for r in (await conn.execute(q)).all()]


async def earliest(conn: AsyncConnection, account_id: int) -> int | None:
    """The account's first ledger entry or usage record (epoch ms)."""
    a = (await conn.execute(select(func.min(LE.created_at)).where(LE.account_id == account_id))).scalar()
    b = (await conn.execute(select(func.min(UR.created_at)).where(UR.account_id == account_id))).scalar()
    found = [v for v in (a, b) if v is not None]
    return min(found) if found else None


# ---------------------------------------------------------------- the kept days
async def end_day(conn: AsyncConnection, account_id: int, tz: str) -> int | None:
    q = select(rollup_state.c.end_day).where(rollup_state.c.account_id == account_id, rollup_state.c.tz == tz)
    return (await conn.execute(q)).scalar_one_or_none()


async def advance(conn: AsyncConnection, account_id: int, tz: str, old: int | None, new: int) -> bool:
    """Move the account's rolled-up frontier from `old` to `new`, first thing in the caller's
    transaction (it takes the write lock); False when another process moved it first."""
    if old is None:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        result = await conn.execute(dialect_insert(rollup_state).values(account_id=account_id, tz=tz, end_day=new)
                                    .on_conflict_do_nothing())
        return result.rowcount == 1
    result = await conn.execute(update(rollup_state).where(
        rollup_state.c.account_id == account_id, rollup_state.c.tz == tz, rollup_state.c.end_day == old)
        .values(end_day=new))
    return result.rowcount == 1


async def keep(conn: AsyncConnection, account_id: int, tz: str, usage: Sequence[tuple],
               ledger: Sequence[tuple]) -> None:
    """Insert closed days' sums (one row per day and model / kind, already merged)."""
    if usage:
        await conn.execute(insert(usage_daily), [
            {"account_id": account_id, "tz": tz, "day": r[0], "model": r[1],
             **dict(zip(USAGE_SUMS, r[2:], strict=True))} for r in usage])
    if ledger:
        await conn.execute(insert(ledger_daily), [
            {"account_id": account_id, "tz": tz, "day": r[0], "kind": r[1], "entries": r[2], "amount": r[3],
             "last_id": r[4]} for r in ledger])


async def kept_usage(conn: AsyncConnection, account_id: int, tz: str, first: int, last: int) -> list[tuple]:
    u = usage_daily.c
    q = (select(u.day, u.model, *(u[c] for c in USAGE_SUMS))
         .where(and_(u.account_id == account_id, u.tz == tz, u.day >= first, u.day <= last)))
    return [tuple(r) for r in (await conn.execute(q)).all()]


async def kept_ledger(conn: AsyncConnection, account_id: int, tz: str, first: int, last: int) -> list[tuple]:
    d = ledger_daily.c
    q = (select(d.day, d.kind, d.entries, d.amount, d.last_id)
         .where(and_(d.account_id == account_id, d.tz == tz, d.day >= first, d.day <= last)))
    return [tuple(r) for r in (await conn.execute(q)).all()]
