"""The billing history and usage service on SQLite and PostgreSQL: keyset pages visit every
row once in both directions, per-day sums equal the rows (kept days and open days, across an
IST midnight and a summer-time change), the CSV rows sum to the ledger, and another account's
ids find nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from aicredits.domain.days import DAY_MS, day_number, day_start, local_day
from aicredits.services.history import EXPORT_COLUMNS, History, NotFound, UsageFilter
from aicredits.store.tables import ledger_daily, rollup_state, usage_daily
from tests.services.history_data import add, migrated_engine, new_account


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


pytestmark = pytest.mark.asyncio(loop_scope="session")
IST = ZoneInfo("Asia/Kolkata")
NOW = datetime.now(UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def ms(y, mo, d, h=0, mi=0, s=0, milli=0, tz=UTC) -> int:
    return int(datetime(y, mo, d, h, mi, s, milli * 1000, tzinfo=tz).timestamp() * 1000)


@pytest.fixture
async def engine(db_url):
    e = await migrated_engine(db_url)
    yield e
    await e.dispose()


async def walk(history, account_id, direction="older", **kw):
    seen, cursor = [], None
    while True:
        page = await history.ledger_page(account_id, limit=7, before=cursor, **kw)
        seen += page.rows
        if not page.more:
            return seen
        cursor = (page.rows[-1]["created_at"], page.rows[-1]["id"])


async def test_ledger_pages_visit_every_entry_once_both_ways(engine):
    history = History(engine)
    a, b = await new_account(engine), await new_account(engine)
    t0 = NOW_MS - 40 * DAY_MS
    # equal created_at on several entries: the id breaks the tie
    await add(engine, a, [("grant", t0, 500_000_000)] + [("call", t0 + (i // 3) * 1000, 1000 + i) for i in range(40)])
    await add(engine, b, [("grant", t0, 9_000_000), ("call", t0 + 5, 77)])
    rows = await walk(history, a)
    assert len(rows) == 41 and len({r["id"] for r in rows}) == 41
    assert [(r["created_at"], r["id"]) for r in rows] == sorted(((r["created_at"], r["id"]) for r in rows),
                                                                  reverse=True)
    assert all(r["account_id"] == a for r in rows)
    # back from the oldest page to the newest with `after`
    first = await history.ledger_page(a, limit=7)
    oldest = rows[-7:]
    back, cursor = [], (oldest[0]["created_at"], oldest[0]["id"])
    while True:
        page = await history.ledger_page(a, limit=7, after=cursor)
        back = page.rows + back
        if not page.more:
            break
        cursor = (page.rows[0]["created_at"], page.rows[0]["id"])
    assert back[:7] == first.rows
    assert back + oldest == rows
    # kinds and a time window
    charges = await walk(history, a, kinds=("charge",), lo=t0 + 3000, hi=t0 + 6000)
    assert [r["amount"] for r in charges] == [-(1000 + i) for i in range(17, 8, -1)]
    # several kinds are read kind by kind and merged: the same pages, both ways
    await add(engine, a, [("refund", t0 + 2000, -5), ("grant", t0 + 9000, 7)])
    everything = await walk(history, a)
    assert await walk(history, a, kinds=("grant", "refund", "charge")) == everything
    assert [r["kind"] for r in await walk(history, a, kinds=("refund", "grant"))] == ["grant", "refund", "grant"]
    cursor, back = (everything[-1]["created_at"], everything[-1]["id"]), []
    while True:
        page = await history.ledger_page(a, kinds=("charge", "refund", "grant"), limit=7, after=cursor)
        back = page.rows + back
        if not page.more:
            break
        cursor = (page.rows[0]["created_at"], page.rows[0]["id"])
    assert back == everything[:-1]


async def test_another_accounts_ids_find_nothing(engine):
    history = History(engine)
    a, b = await new_account(engine), await new_account(engine)
    await add(engine, a, [("grant", NOW_MS - 1000, 5_000_000)])
    await add(engine, b, [("grant", NOW_MS - 2000, 7_000_000), ("call", NOW_MS - 1500, 321)])
    b_page = await history.ledger_page(b)
    b_entry = b_page.rows[0]["id"]
    assert (await history.entry(b, b_entry))["call"]["cost"] == 321
    with pytest.raises(NotFound):
        await history.entry(a, b_entry)
    # b's cursor used by a pages a's own entries only
    page = await history.ledger_page(a, before=(NOW_MS, b_entry + 1000))
    assert {r["account_id"] for r in page.rows} == {a}
    # b's key id in a's request-log filter
    from aicredits.store import api_keys as keys_repo
    async with engine.begin() as conn:
        await keys_repo.create(conn, key_id="kb", account_id=b, name="b", key_hash="h" * 64, display="sk-b",
                               limit_micros=None, rpm=None, tpm=None)
    with pytest.raises(NotFound):
        await history.usage_page(a, UsageFilter(key_id="kb"))
    assert (await history.usage_page(b, UsageFilter(key_id="kb"))).rows == []


def python_daily(events, tz) -> dict:
    """The expected per-day sums, computed from the events with zoneinfo."""
    out: dict[int, dict] = {}
    for ev in events:
        day = day_number(datetime.fromtimestamp(ev[1] / 1000, tz).date())
        d = out.setdefault(day, {"requests": 0, "cost": 0, "kinds": {}})
        if ev[0] == "call":
            d["requests"] += 1
            d["cost"] += ev[2]
            kind, amount = ("charge", -ev[2]) if ev[2] else (None, 0)
        else:
            kind, amount = ev[0], ev[2]
        if kind:
            k = d["kinds"].setdefault(kind, [0, 0])
            k[0] += 1
            k[1] += amount
    return out


def got_daily(days) -> dict:
    return {d.day: {"requests": d.usage_total("requests"), "cost": d.usage_total("cost"),
                    "kinds": {k: [s["entries"], s["amount"]] for k, s in d.kinds.items()}} for d in days}


async def test_daily_sums_equal_the_rows_kept_and_open(engine):
    history = History(engine)
    a = await new_account(engine)
    today = local_day(NOW_MS, IST)
    start = today - 9
    events = [("grant", NOW_MS - 9 * DAY_MS, 900_000_000)]
    for i in range(9 * 24):                      # every hour for 9 days, in order
        at = NOW_MS - 9 * DAY_MS + i * 3_600_000 + 17
        events.append(("call", at, 10_000 + i, {"model": ["m/a", "m/b"][i % 2]}))
    # both sides of IST midnight (18:30 UTC) yesterday
    boundary = day_start(today - 1, IST)        # yesterday's IST midnight: 18:30 UTC the day before
    assert boundary % DAY_MS == DAY_MS - 19_800_000
    events += [("call", boundary - 1, 7), ("call", boundary, 11), ("adjustment", boundary + 5, -3)]
    events.sort(key=lambda e: e[1])
    await add(engine, a, events)

    days = await history.daily(a, IST, start - 2, today)
    assert got_daily(days) == python_daily(events, IST)
    assert any(d.day == today - 1 and d.kinds["charge"]["entries"] >= 1 for d in days)
    async with engine.connect() as conn:
        end = (await conn.execute(select(rollup_state.c.end_day).where(rollup_state.c.account_id == a))).scalar()
        kept = (await conn.execute(select(func.count()).select_from(usage_daily)
                                   .where(usage_daily.c.account_id == a))).scalar()
    assert end == local_day(NOW_MS - 5 * 60_000, IST)       # every closed day is kept ...
    assert kept > 0
    # ... and stays as it was: reading again, with new rows today, sums the same plus today's
    more = [("call", NOW_MS - 1000, 555)]
    await add(engine, a, more)
    again = await history.daily(a, IST, start - 2, today)
    assert got_daily(again) == python_daily(sorted(events + more, key=lambda e: e[1]), IST)
    totals = await history.ledger_totals(a, IST, start - 2, today)
    sums = await history.ledger_sums(a)
    assert {k: (v["entries"], v["amount"]) for k, v in totals.items()} == sums


async def test_daily_sums_across_a_summer_time_change(engine):
    ny = ZoneInfo("America/New_York")
    history = History(engine)
    a = await new_account(engine)
    # 2025-03-09 02:00 EST -> 03:00 EDT; 2025-11-02 02:00 EDT -> 01:00 EST
    times = [ms(2025, 3, 9, 6, 59, 59), ms(2025, 3, 9, 7, 0, 0), ms(2025, 3, 10, 3, 59, 59), ms(2025, 3, 10, 4),
             ms(2025, 11, 2, 4, 59), ms(2025, 11, 2, 5, 30), ms(2025, 11, 2, 6, 30), ms(2025, 11, 3, 4, 59, 59),
             ms(2025, 11, 3, 5)]
    events = [("grant", times[0] - 1000, 100_000)] + [("call", t, 100 + i) for i, t in enumerate(times)]
    await add(engine, a, events)
    first, last = day_number(datetime(2025, 3, 1).date()), day_number(datetime(2025, 11, 30).date())
    assert got_daily(await history.daily(a, ny, first, last)) == python_daily(events, ny)
    # and summed live (a zone not rolled up yet gives the same after its roll-up)
    assert got_daily(await history.daily(a, ny, first, last)) == python_daily(events, ny)


async def test_two_roll_ups_at_once_keep_each_day_once(engine):
    history = History(engine)
    a = await new_account(engine)
    events = [("grant", NOW_MS - 50 * DAY_MS, 10**9)] + [("call", NOW_MS - 50 * DAY_MS + i * 7_200_000, 1000)
                                                         for i in range(500)]
    await add(engine, a, events)
    await asyncio.gather(*(history.roll_up(a, IST) for _ in range(4)))
    async with engine.connect() as conn:
        kept = (await conn.execute(select(func.sum(ledger_daily.c.entries)).where(
            ledger_daily.c.account_id == a, ledger_daily.c.kind == "charge"))).scalar()
    end = local_day(NOW_MS - 5 * 60_000, IST)
    expected = sum(1 for e in events[1:] if local_day(e[1], IST) < end)
    assert kept == expected
    days = await history.daily(a, IST, local_day(NOW_MS, IST) - 60, local_day(NOW_MS, IST))
    assert sum(d.kinds.get("charge", {}).get("entries", 0) for d in days) == 500


async def test_streamed_rows_sum_to_the_ledger_and_the_wallet(engine):
    history = History(engine)
    a = await new_account(engine)
    events = [("grant", NOW_MS - 3 * DAY_MS, 50_000_000), ("topup", NOW_MS - 2 * DAY_MS, 1_234_567)]
    events += [("call", NOW_MS - 2 * DAY_MS + i * 1000, 999 + i) for i in range(4500)]
    events += [("refund", NOW_MS - DAY_MS, -42), ("debit", NOW_MS - 1000, -1_000_001)]
    await add(engine, a, events)
    n = total = 0
    last_balance = None
    rows = [dict(zip(EXPORT_COLUMNS, row, strict=True))
            async for batch in history.ledger_batches(a) for row in batch]
    for row in rows:
        n += 1
        total += row["amount"]
        last_balance = row["balance_after"]
    from aicredits.store import accounts as accounts_repo
    async with engine.connect() as conn:
        wallet = await accounts_repo.wallet(conn, a)
    assert n == 4504
    assert total == wallet.balance == last_balance == sum(v[1] for v in (await history.ledger_sums(a)).values())
