"""One account's ledger entries and usage records, as the billing history and the request log
read them: keyset pages on (created_at, id) within the account (indexes of 0004_history), the
CSV stream, and look-ups by id that never cross accounts (another account's id is absent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from aicredits.store.db import row_dict
from aicredits.store.tables import api_keys, ledger_entries, usage_records

LE = ledger_entries.c
UR = usage_records.c
STREAM_BATCH = 2000
REQUEST_LOG_COLUMNS = (UR.id, UR.call_id, UR.request_id, UR.key_id, UR.model, UR.provider, UR.endpoint, UR.stream,
                       UR.prompt_tokens, UR.completion_tokens, UR.cache_read_tokens, UR.reasoning_tokens, UR.units,
                       UR.cost, UR.latency_ms, UR.status, UR.cache, UR.end_state, UR.created_at)


@dataclass(frozen=True)
class Page:
    """Rows newest first; `more`: there are rows beyond this page in the direction it was
    read (older for a `before` cursor or none, newer for an `after` cursor). A cursor is the
    (created_at, id) of the row to continue from."""
    rows: list[dict]
    more: bool              # more rows beyond this page, in the direction it was read


@dataclass(frozen=True)
class Window:
    """What a page or the CSV is filtered on, within one account."""
    account_id: int
    lo: int | None = None          # created_at >= lo (epoch ms)
    hi: int | None = None          # created_at < hi


def _window(cols: ReadOnlyColumnCollection[str, ColumnElement[Any]], w: Window) -> list[ColumnElement[bool]]:
    conds = [cols.account_id == w.account_id]
    if w.lo is not None:
        conds.append(cols.created_at >= w.lo)
    if w.hi is not None:
        conds.append(cols.created_at < w.hi)
    return conds


def _narrowed(w: Window, before: tuple[int, int] | None, after: tuple[int, int] | None) -> Window:
    """The window with the cursor's time as one more bound. The row-value comparison in
    _keyset is the exact condition; this one plain bound per side is what SQLite's planner can
    seek with in the (account_id, created_at, id) index (given two upper bounds it may take the
    looser one and scan half the account)."""
    lo, hi = w.lo, w.hi
    if before is not None:
        hi = before[0] + 1 if hi is None else min(hi, before[0] + 1)
    if after is not None:
        lo = after[0] if lo is None else max(lo, after[0])
    return Window(w.account_id, lo, hi)


async def _keyset(conn: AsyncConnection, query: Select[Any],
                  cols: ReadOnlyColumnCollection[str, ColumnElement[Any]], limit: int, before: tuple[int, int] | None,
                  after: tuple[int, int] | None) -> Page:
    key = tuple_(cols.created_at, cols.id)
    if after is not None:            # the page newer than `after`, read oldest first then turned
        q = query.where(key > tuple_(*after)).order_by(cols.created_at.asc(), cols.id.asc()).limit(limit + 1)
        rows = [row_dict(r) for r in (await conn.execute(q)).all()]
        more = len(rows) > limit
        return Page(list(reversed(rows[:limit])), more)
    if before is not None:
        query = query.where(key < tuple_(*before))
    q = query.order_by(cols.created_at.desc(), cols.id.desc()).limit(limit + 1)
    rows = [row_dict(r) for r in (await conn.execute(q)).all()]
    return Page(rows[:limit], len(rows) > limit)


# ---------------------------------------------------------------- the ledger
def _ledger_select(conds: list[ColumnElement[bool]]) -> Select[Any]:
    return select(ledger_entries, api_keys.c.name.label("key_name"), UR.model.label("model")).select_from(
        ledger_entries.outerjoin(api_keys, api_keys.c.id == LE.key_id)
        .outerjoin(usage_records, and_(UR.call_id == LE.call_id, UR.account_id == LE.account_id))
    ).where(and_(*conds))


async def ledger_page(conn: AsyncConnection, w: Window, *, kinds: Sequence[str] = (), limit: int = 50,
                      before: tuple[int, int] | None = None, after: tuple[int, int] | None = None) -> Page:
    conds = _window(LE, _narrowed(w, before, after))
    if len(kinds) > 1:
        # one keyset page per kind, each seeking in (account_id, kind, created_at, id), merged in
        # one statement (UNION ALL): an IN list would have SQLite walk the time index through
        # every charge in the window
        key = tuple_(LE.created_at, LE.id)
        parts = []
        for k in kinds:
            q = _ledger_select([*conds, LE.kind == k])
            if after is not None:
                q = q.where(key > tuple_(*after)).order_by(LE.created_at.asc(), LE.id.asc())
            else:
                q = q.where(key < tuple_(*before)) if before is not None else q
                q = q.order_by(LE.created_at.desc(), LE.id.desc())
            parts.append(select(q.limit(limit + 1).subquery()))
        merged = union_all(*parts).subquery()
        order = (merged.c.created_at.asc(), merged.c.id.asc()) if after is not None else \
            (merged.c.created_at.desc(), merged.c.id.desc())
        rows = [row_dict(r) for r in (await conn.execute(select(merged).order_by(*order).limit(limit + 1))).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(list(reversed(rows)) if after is not None else rows, more)
    if kinds:
        conds.append(LE.kind == kinds[0])
    return await _keyset(conn, _ledger_select(conds), LE, limit, before, after)


async def ledger_entry(conn: AsyncConnection, account_id: int, entry_id: int) -> dict | None:
    """The entry when it is this account's; None otherwise."""
    r = (await conn.execute(select(ledger_entries, api_keys.c.name.label("key_name")).select_from(
        ledger_entries.outerjoin(api_keys, api_keys.c.id == LE.key_id))
        .where(LE.id == entry_id, LE.account_id == account_id))).first()
    return row_dict(r) if r else None


async def ledger_sums(conn: AsyncConnection, w: Window, kinds: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
    """kind -> (entries, sum of amounts), straight from the entries."""
    conds = _window(LE, w)
    if kinds:
        conds.append(LE.kind.in_(kinds))
    q = select(LE.kind, func.count(), func.coalesce(func.sum(LE.amount), 0)).where(and_(*conds)).group_by(LE.kind)
    return {r[0]: (int(r[1]), int(r[2])) for r in (await conn.execute(q)).all()}


EXPORT_COLUMNS = ("id", "created_at", "kind", "amount", "balance_after", "key_id", "call_id", "note")


async def ledger_batches(conn: AsyncConnection, w: Window, kinds: Sequence[str] = ()) -> AsyncIterator[list[tuple]]:
    """Every entry of the window, oldest first, as lists of up to STREAM_BATCH tuples in
    EXPORT_COLUMNS order, read from a server-side cursor (the CSV export streams these; the
    whole ledger is never in memory)."""
    conds = _window(LE, w)
    if kinds:
        conds.append(LE.kind.in_(kinds))
    q = (select(*(LE[c] for c in EXPORT_COLUMNS)).where(and_(*conds)).order_by(LE.created_at.asc(), LE.id.asc())
         .execution_options(yield_per=STREAM_BATCH))
    result = await conn.stream(q)
    async for batch in result.partitions(STREAM_BATCH):
        yield [tuple(r) for r in batch]


async def balance_after(conn: AsyncConnection, account_id: int,
                        entry_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """entry id -> (balance_after, created_at), for this account's entries only."""
    if not entry_ids:
        return {}
    q = select(LE.id, LE.balance_after, LE.created_at).where(LE.account_id == account_id,
                                                              LE.id.in_(list(entry_ids)))
    return {r[0]: (r[1], r[2]) for r in (await conn.execute(q)).all()}


async def latest_before(conn: AsyncConnection, account_id: int, t: int, kinds: Sequence[str] = ()) -> int | None:
    """created_at of the account's newest entry before t (None: there is none)."""
    conds = [LE.account_id == account_id, LE.created_at < t]
    if kinds:
        conds.append(LE.kind.in_(kinds))
    q = select(LE.created_at).where(and_(*conds)).order_by(LE.created_at.desc(), LE.id.desc()).limit(1)
    return (await conn.execute(q)).scalar_one_or_none()


async def charge_ids(conn: AsyncConnection, account_id: int, call_ids: Sequence[str]) -> dict[str, int]:
    """call id -> the id of its charge entry (calls that charged nothing have none)."""
    if not call_ids:
        return {}
    q = select(LE.call_id, LE.id).where(LE.kind == "charge", LE.call_id.in_(list(call_ids)),
                                        LE.account_id == account_id)
    return {r[0]: r[1] for r in (await conn.execute(q)).all()}


# ---------------------------------------------------------------- usage records
@dataclass(frozen=True)
class UsageFilter:
    model: str | None = None
    key_id: str | None = None
    status: str | None = None      # "ok" (below 400) | "error"
    cache: str | None = None       # hit | miss | bypass


def _usage_conds(w: Window, f: UsageFilter) -> list:
    conds = _window(UR, w)
    if f.model:
        conds.append(UR.model == f.model)
    if f.key_id:
        conds.append(UR.key_id == f.key_id)
    if f.status == "ok":
        conds.append(UR.status < 400)
    elif f.status == "error":
        conds.append(UR.status >= 400)
    if f.cache:
        conds.append(UR.cache == f.cache)
    return conds


async def usage_page(conn: AsyncConnection, w: Window, f: UsageFilter, *, limit: int = 50,
                     before: tuple[int, int] | None = None, after: tuple[int, int] | None = None) -> Page:
    q = select(*REQUEST_LOG_COLUMNS, api_keys.c.name.label("key_name")).select_from(
        usage_records.outerjoin(api_keys, api_keys.c.id == UR.key_id)).where(
        and_(*_usage_conds(_narrowed(w, before, after), f)))
    return await _keyset(conn, q, UR, limit, before, after)


async def usage_by_call(conn: AsyncConnection, account_id: int, call_id: str) -> dict | None:
    r = (await conn.execute(select(usage_records).where(UR.call_id == call_id, UR.account_id == account_id))).first()
    return row_dict(r) if r else None


async def owns_key(conn: AsyncConnection, account_id: int, key_id: str) -> bool:
    q = select(api_keys.c.id).where(api_keys.c.id == key_id, api_keys.c.account_id == account_id)
    return (await conn.execute(q)).first() is not None


async def recent_calls(conn: AsyncConnection, *, since: int, limit: int) -> list[dict]:
    """The newest calls of every account (the provider status page): provider, status, latency."""
    q = (select(UR.provider, UR.deployment, UR.status, UR.latency_ms, UR.created_at)
         .order_by(UR.id.desc()).limit(limit))
    return [row_dict(r) for r in (await conn.execute(q)).all() if r.created_at >= since]

