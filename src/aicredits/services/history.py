"""One account's billing history and usage, for the dashboard and the admin API.

Every read names the account; an id, cursor or key of another account finds nothing
(NotFound), so no URL or form reaches another account's data.

Pages are keysets on (created_at, id), newest first. Per-day sums (the usage charts, the
billing history's charges per day, the range totals) come from daily rollups: a day that is
over (CLOSE_MARGIN past its end, so no settle can still land in it) is summed once from the
rows and kept (store/rollups.py); the days still open are summed from the rows on each read.
Usage records and ledger entries are append-only, so a kept day never changes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from aicredits.domain.days import day_start, local_day, segments
from aicredits.domain.ledger import KINDS
from aicredits.store import history as repo
from aicredits.store import rollups
from aicredits.store.db import Conn, Engine
from aicredits.store.history import EXPORT_COLUMNS, Page, UsageFilter, Window

CLOSE_MARGIN_MS = 5 * 60 * 1000
BUILD_CHUNK_DAYS = 31
MAX_PAGE = 200
MAX_ID = 2**31 - 1             # ids are INTEGER columns: a larger one is no row
PARTS = ("usage", "ledger")

__all__ = ["EXPORT_COLUMNS", "History", "NotFound", "Page", "UsageFilter"]


class NotFound(Exception):
    """No such entry, call or key in this account."""


class _Lost(Exception):
    """Another process moved the rollup frontier first (the transaction is rolled back)."""


@dataclass
class DaySums:
    """One local day: per model usage sums and per kind ledger sums."""
    day: int
    models: dict[str, dict] = field(default_factory=dict)
    kinds: dict[str, dict] = field(default_factory=dict)

    def usage_total(self, name: str) -> int:
        return sum(m[name] for m in self.models.values())


@dataclass(frozen=True)
class BillingDays:
    """One page of the billing history by day, newest first: a row per day of charges
    ({"type": "charges", "day", "entries", "amount", "balance_after", "at", "last_id"}) and
    every other entry as itself ({"type": "entry", ...the entry}). `older` / `newer`: the
    last day of the page before / after (None: none)."""
    rows: list[dict]
    first: int
    last: int
    older: int | None
    newer: int | None
    truncated: bool          # more non-charge entries than one page shows


def now_ms() -> int:
    return int(time.time() * 1000)


def _merge_usage(into: dict[int, DaySums], rows: Iterable[Sequence[Any]]) -> None:
    for day, model, *sums in rows:
        acc = into.setdefault(day, DaySums(day)).models.setdefault(model, dict.fromkeys(rollups.USAGE_SUMS, 0))
        for name, v in zip(rollups.USAGE_SUMS, sums, strict=True):
            acc[name] += int(v)


def _merge_ledger(into: dict[int, DaySums], rows: Iterable[Sequence[Any]]) -> None:
    for day, kind, entries, amount, last_id in rows:
        acc = into.setdefault(day, DaySums(day)).kinds.setdefault(kind, {"entries": 0, "amount": 0, "last_id": 0})
        acc["entries"] += int(entries)
        acc["amount"] += int(amount)
        acc["last_id"] = max(acc["last_id"], int(last_id))


def _flatten(days: dict) -> tuple[list, list]:
    usage = [(d.day, m, *(s[n] for n in rollups.USAGE_SUMS)) for d in days.values() for m, s in d.models.items()]
    ledger = [(d.day, k, s["entries"], s["amount"], s["last_id"]) for d in days.values() for k, s in d.kinds.items()]
    return usage, ledger


class History:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ------------------------------------------------------------ daily sums
    async def _sum_rows(self, conn: Conn, account_id: int, lo: int, hi: int, tz: ZoneInfo,
                        parts: Sequence[str] = PARTS) -> dict[int, DaySums]:
        days: dict[int, DaySums] = {}
        for seg in segments(lo, hi, tz):
            if "usage" in parts:
                _merge_usage(days, await rollups.usage_by_day(conn, account_id, seg.lo, seg.hi, seg.offset))
            if "ledger" in parts:
                _merge_ledger(days, await rollups.ledger_by_day(conn, account_id, seg.lo, seg.hi, seg.offset))
        return days

    async def roll_up(self, account_id: int, tz: ZoneInfo, now: int | None = None) -> int | None:
        """Keep the sums of every closed day not kept yet; returns the rollup's frontier (days
        before it are kept; None: nothing kept). Another process rolling up the same account at
        once: one of them keeps each day, the other stops and reads the rest live."""
        async with self._engine.connect() as conn:
            return await self._roll_up(conn, account_id, tz, now)

    async def _roll_up(self, conn: Conn, account_id: int, tz: ZoneInfo, now: int | None = None) -> int | None:
        """The frontier, read on `conn`; when closed days wait, they are kept first (on
        connections of their own) and the new frontier returned."""
        closed = local_day((now or now_ms()) - CLOSE_MARGIN_MS, tz)
        end = await rollups.end_day(conn, account_id, tz.key)
        if end is not None and end >= closed:
            return end
        if end is None:
            first = await rollups.earliest(conn, account_id)
            start = min(local_day(first, tz), closed) if first is not None else closed
        else:
            start = end
        cur, frontier = start, end
        while cur < closed:
            nxt = min(closed, cur + BUILD_CHUNK_DAYS)
            async with self._engine.connect() as read:
                usage, ledger = _flatten(await self._sum_rows(read, account_id, day_start(cur, tz),
                                                              day_start(nxt, tz), tz))
            try:
                async with self._engine.begin() as write:
                    if not await rollups.advance(write, account_id, tz.key, frontier, nxt):
                        raise _Lost()
                    await rollups.keep(write, account_id, tz.key, usage, ledger)
            except _Lost:
                break          # another process keeps these days; reads sum what is not kept yet live
            cur = frontier = nxt
        return frontier

    async def daily(self, account_id: int, tz: ZoneInfo, first: int, last: int,
                    parts: Sequence[str] = PARTS) -> list[DaySums]:
        """Sums for each local day in [first, last] that had anything, oldest first: of the
        usage records and / or the ledger entries (`parts`)."""
        days: dict[int, DaySums] = {}
        async with self._engine.connect() as conn:
            end = await self._roll_up(conn, account_id, tz)
            live_from = first if end is None else max(first, end)
            if end is not None and first < end:
                kept_last = min(last, end - 1)
                if "usage" in parts:
                    _merge_usage(days, await rollups.kept_usage(conn, account_id, tz.key, first, kept_last))
                if "ledger" in parts:
                    _merge_ledger(days, await rollups.kept_ledger(conn, account_id, tz.key, first, kept_last))
            if live_from <= last:
                live = await self._sum_rows(conn, account_id, day_start(live_from, tz), day_start(last + 1, tz), tz,
                                            parts)
                for d, sums in live.items():
                    _merge_usage(days, [(d, m, *(s[n] for n in rollups.USAGE_SUMS)) for m, s in sums.models.items()])
                    _merge_ledger(days, [(d, k, s["entries"], s["amount"], s["last_id"])
                                         for k, s in sums.kinds.items()])
        return [days[d] for d in sorted(days)]

    async def ledger_daily(self, account_id: int, tz: ZoneInfo, first: int, last: int) -> list[DaySums]:
        return await self.daily(account_id, tz, first, last, parts=("ledger",))

    async def ledger_totals(self, account_id: int, tz: ZoneInfo, first: int, last: int,
                            days: Sequence[DaySums] | None = None) -> dict[str, dict]:
        """kind -> {"entries", "amount"} over the days [first, last] (of `days` when given)."""
        out: dict[str, dict] = {}
        for d in days if days is not None else await self.ledger_daily(account_id, tz, first, last):
            for kind, s in d.kinds.items():
                acc = out.setdefault(kind, {"entries": 0, "amount": 0})
                acc["entries"] += s["entries"]
                acc["amount"] += s["amount"]
        return out

    # ------------------------------------------------------------ the ledger
    async def ledger_page(self, account_id: int, *, lo: int | None = None, hi: int | None = None,
                          kinds: Sequence[str] = (), before: tuple[int, int] | None = None,
                          after: tuple[int, int] | None = None, limit: int = 50) -> Page:
        async with self._engine.connect() as conn:
            return await repo.ledger_page(conn, Window(account_id, lo, hi), kinds=tuple(kinds),
                                          limit=min(limit, MAX_PAGE), before=before, after=after)

    async def latest_before(self, account_id: int, t: int, kinds: Sequence[str] = ()) -> int | None:
        async with self._engine.connect() as conn:
            return await repo.latest_before(conn, account_id, t, tuple(kinds))

    async def entry(self, account_id: int, entry_id: int) -> dict:
        """The entry and, for a charge, its call's usage record."""
        if not 0 < entry_id <= MAX_ID:
            raise NotFound(entry_id)
        async with self._engine.connect() as conn:
            e = await repo.ledger_entry(conn, account_id, entry_id)
            if e is None:
                raise NotFound(entry_id)
            e["call"] = await repo.usage_by_call(conn, account_id, e["call_id"]) if e["call_id"] else None
        return e

    async def ledger_batches(self, account_id: int, *, lo: int | None = None, hi: int | None = None,
                             kinds: Sequence[str] = ()) -> AsyncIterator[list[tuple]]:
        """Every entry in the window, oldest first, in batches of tuples (EXPORT_COLUMNS order)
        streamed from the database."""
        async with self._engine.connect() as conn:
            async for batch in repo.ledger_batches(conn, Window(account_id, lo, hi), tuple(kinds)):
                yield batch


    async def ledger_sums(self, account_id: int, *, lo: int | None = None, hi: int | None = None,
                          kinds: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
        """kind -> (entries, amount) summed from the entries themselves."""
        async with self._engine.connect() as conn:
            return await repo.ledger_sums(conn, Window(account_id, lo, hi), tuple(kinds))

    async def billing_days(self, account_id: int, tz: ZoneInfo, *, first: int | None, last: int,
                           page_last: int, days: Sequence[DaySums], kinds: Sequence[str] = (), span: int = 14,
                           limit: int = MAX_PAGE) -> BillingDays:
        """Days [page_last - span + 1, page_last] (not before `first`) of the range [first, last];
        `days`: the ledger's daily sums (History.ledger_daily) covering them. One connection."""
        page_first = page_last - span + 1 if first is None else max(first, page_last - span + 1)
        want = set(kinds) or set(KINDS)
        charges = {d.day: dict(d.kinds["charge"]) for d in days
                   if "charge" in want and "charge" in d.kinds and page_first <= d.day <= page_last}
        others = tuple(k for k in KINDS if k in want and k != "charge")
        async with self._engine.connect() as conn:
            found = await repo.balance_after(conn, account_id, [c["last_id"] for c in charges.values()])
            page = None
            if others:
                page = await repo.ledger_page(conn, Window(account_id, day_start(page_first, tz),
                                                           day_start(page_last + 1, tz)), kinds=others, limit=limit)
            before = await repo.latest_before(conn, account_id, day_start(page_first, tz), tuple(kinds))
        rows: list[dict] = []
        for day, c in charges.items():
            c["balance_after"], c["at"] = found.get(c["last_id"], (None, None))
            rows.append({"type": "charges", "day": day, **c, "id": c["last_id"]})
        if page is not None:
            rows += [{"type": "entry", "at": r["created_at"], **r} for r in page.rows]
        rows.sort(key=lambda r: (r["at"] or 0, r["id"]), reverse=True)
        older = local_day(before, tz) if before is not None and (first is None or local_day(before, tz) >= first) \
            else None
        newer = min(last, page_last + span) if page_last < last else None
        return BillingDays(rows, page_first, page_last, older, newer, page.more if page is not None else False)

    # ------------------------------------------------------------ usage records
    async def check_key(self, account_id: int, key_id: str) -> None:
        async with self._engine.connect() as conn:
            if not await repo.owns_key(conn, account_id, key_id):
                raise NotFound(key_id)

    async def usage_page(self, account_id: int, f: UsageFilter, *, lo: int | None = None, hi: int | None = None,
                         before: tuple[int, int] | None = None, after: tuple[int, int] | None = None,
                         limit: int = 50) -> Page:
        """The request log; each row with `entry_id`, its charge's ledger entry (None: nothing charged)."""
        if f.key_id:
            await self.check_key(account_id, f.key_id)
        async with self._engine.connect() as conn:
            page = await repo.usage_page(conn, Window(account_id, lo, hi), f, limit=min(limit, MAX_PAGE),
                                         before=before, after=after)
            ids = await repo.charge_ids(conn, account_id, [r["call_id"] for r in page.rows if r["cost"]])
        for r in page.rows:
            r["entry_id"] = ids.get(r["call_id"])
        return page
