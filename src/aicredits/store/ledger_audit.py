"""The reads behind `aicredits ledger verify`: each check is one query over the whole
database, run in one snapshot so a gateway serving calls meanwhile cannot make the parts
disagree. The rules (signs, totals) come from domain/ledger.py; this module only adds up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement, Subquery

from aicredits.domain.ledger import KeyFacts, WalletFacts, kinds_in_total, kinds_with_sign
from aicredits.store.db import row_dict
from aicredits.store.tables import api_keys, holds, ledger_entries, usage_records, wallets

L = ledger_entries.c


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only connection whose every query sees the same committed state."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        else:   # SQLite (WAL): an explicit read transaction keeps one snapshot until it ends
            await conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            await conn.rollback()


async def _first_and_count(conn: AsyncConnection, bad: Subquery) -> tuple[dict | None, int]:
    """The lowest-id row of the subquery `bad` (it has an `id` column) and how many it has."""
    first = (await conn.execute(select(bad).order_by(bad.c.id).limit(1))).first()
    if first is None:
        return None, 0
    count = (await conn.execute(select(func.count()).select_from(bad))).scalar_one()
    return row_dict(first), count


async def chain_breaks(conn: AsyncConnection) -> tuple[dict | None, int]:
    """Entries whose balance_after is not the previous entry's (0 for an account's first) plus
    their amount, in id order per account."""
    previous = func.coalesce(func.lag(L.balance_after).over(partition_by=L.account_id, order_by=L.id), 0)
    chained = select(L.id, L.account_id, L.kind, L.amount, L.balance_after,
                     previous.label("previous")).subquery()
    bad = select(chained).where(chained.c.balance_after != chained.c.previous + chained.c.amount).subquery()
    return await _first_and_count(conn, bad)


async def sign_violations(conn: AsyncConnection) -> tuple[dict | None, int]:
    """Entries of an unknown kind, or whose amount has the wrong sign for their kind."""
    fine = or_(and_(L.kind.in_(kinds_with_sign(1)), L.amount > 0),
               and_(L.kind.in_(kinds_with_sign(-1)), L.amount < 0),
               and_(L.kind.in_(kinds_with_sign(0)), L.amount != 0))
    bad = select(L.id, L.account_id, L.kind, L.amount).where(~fine).subquery()
    return await _first_and_count(conn, bad)


def _sum(expr: ColumnElement[int]) -> ColumnElement[int]:
    return func.coalesce(func.sum(expr), 0)


async def wallet_facts(conn: AsyncConnection) -> list[WalletFacts]:
    added = case((L.kind.in_(kinds_in_total("added")), L.amount), else_=literal(0))
    spent = case((L.kind.in_(kinds_in_total("spent")), -L.amount), else_=literal(0))
    sums = (select(L.account_id, _sum(L.amount).label("entries"), _sum(added).label("added"),
                   _sum(spent).label("spent"), func.max(L.id).label("last_id"))
            .group_by(L.account_id).subquery())
    last = ledger_entries.alias("last_entry")
    hsum = select(holds.c.account_id, _sum(holds.c.amount).label("h")).group_by(holds.c.account_id).subquery()
    w = wallets.c
    q = (select(w.account_id, w.balance, w.held, w.total_added, w.total_spent, sums.c.entries, sums.c.added,
                sums.c.spent, last.c.balance_after.label("last"), hsum.c.h)
         .select_from(wallets.outerjoin(sums, sums.c.account_id == w.account_id)
                      .outerjoin(last, last.c.id == sums.c.last_id)
                      .outerjoin(hsum, hsum.c.account_id == w.account_id))
         .order_by(w.account_id))
    return [WalletFacts(r.account_id, r.balance, r.held, r.total_added, r.total_spent, int(r.entries or 0),
                        r.last, int(r.added or 0), int(r.spent or 0), int(r.h or 0))
            for r in (await conn.execute(q)).all()]


async def key_facts(conn: AsyncConnection) -> list[KeyFacts]:
    charges = (select(L.key_id, _sum(-L.amount).label("c"))
               .where(L.key_id.is_not(None), L.kind.in_(kinds_in_total("spent")))
               .group_by(L.key_id).subquery())
    hsum = (select(holds.c.key_id, _sum(holds.c.amount).label("h")).where(holds.c.key_id.is_not(None))
            .group_by(holds.c.key_id).subquery())
    k = api_keys.c
    q = (select(k.id, k.account_id, k.limit_micros, k.spent, k.held, charges.c.c, hsum.c.h)
         .select_from(api_keys.outerjoin(charges, charges.c.key_id == k.id)
                      .outerjoin(hsum, hsum.c.key_id == k.id))
         .order_by(k.id))
    return [KeyFacts(r.id, r.account_id, r.limit_micros, r.spent, r.held, int(r.c or 0), int(r.h or 0))
            for r in (await conn.execute(q)).all()]


async def settled_holds(conn: AsyncConnection) -> list[dict]:
    """Holds whose call already has a usage record: settling deletes the hold in the same
    transaction that writes the record, so such a hold holds money for nothing."""
    q = (select(holds.c.call_id, holds.c.account_id, holds.c.amount)
         .join(usage_records, usage_records.c.call_id == holds.c.call_id)
         .order_by(holds.c.created_at, holds.c.call_id))
    return [row_dict(r) for r in (await conn.execute(q)).all()]


async def expired_holds(conn: AsyncConnection, now: int) -> list[dict]:
    q = select(holds).where(holds.c.expires_at < now).order_by(holds.c.expires_at, holds.c.call_id)
    return [row_dict(r) for r in (await conn.execute(q)).all()]
