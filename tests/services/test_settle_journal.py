"""A settle that fails is retried, then journaled to disk and replayed (at start and by the
sweeper); every delivered call is charged exactly once. SQLite with its write lock held by another
connection while a stream finishes; PostgreSQL through a TCP proxy that resets connections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from tests.conftest import PG_ADMIN_DSN, expected_micros
from tests.fakes.openai_upstream import Scenario, split_content
from tests.inproc import running
from tests.tcp_proxy import TcpProxy

WORDS = "one two three four five six"
MESSAGES = [{"role": "user", "content": "Count to six"}]
BODY = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True,
        "stream_options": {"include_usage": True}}


def events(raw: str) -> list:
    out = []
    for block in raw.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def assert_whole_answer(r, cost_micros: int) -> None:
    """The client got every delta, the usage chunk with its cost, and [DONE]."""
    assert r.status_code == 200
    ev = events(r.text)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in ev if isinstance(e, dict) and e["choices"]) \
        == WORDS
    usage = [e for e in ev if isinstance(e, dict) and e.get("usage")]
    assert len(usage) == 1 and round(usage[0]["usage"]["cost"] * 1_000_000) == cost_micros
    assert ev[-1] == "[DONE]"


def journal_files(state_dir) -> list:
    d = state_dir / "settle-journal"
    return sorted(d.glob("*.settle.json")) if d.is_dir() else []


async def charge_of(g) -> int:
    entry = {e["id"]: e for e in (await g.client.get("/api/models")).json()["data"]}["openai/gpt-4o-mini"]
    return expected_micros(entry, 19, 9)      # the fake's usage chunk: 19 prompt, 9 completion tokens


async def assert_charged_once(g, key: dict, rids: list[str], charge: int) -> None:
    rows = {r["request_id"]: r for r in await g.usage(key)}
    assert sorted(rows) == sorted(rids)
    assert {(r["end_state"], r["cost"]) for r in rows.values()} == {("completed", charge)}
    w = await g.admin.wallet(key["email"])
    assert (w["held"], w["total_spent"]) == (0, charge * len(rids))
    async with g.engine.connect() as conn:
        entries = (await conn.execute(text("SELECT kind, amount, call_id FROM ledger_entries WHERE kind != 'grant' "
                                           "AND account_id = (SELECT id FROM accounts WHERE email = :e)"),
                                      {"e": key["email"]})).all()
    assert sorted((kind, amount) for kind, amount, _ in entries) == [("charge", -charge)] * len(rids)
    assert sorted(call_id for *_, call_id in entries) == sorted(r["call_id"] for r in rows.values())
    assert (await g.key_row(key))["held"] == 0
    assert await g.admin.verify() == []


# ---------------------------------------------------------------- SQLite: the write lock
def hold_write_lock(path: str, locked: threading.Event, release: threading.Event) -> None:
    """Hold SQLite's write lock from another connection until `release` (at most 60 s)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(60)
    conn.execute("ROLLBACK")
    conn.close()


async def test_sqlite_write_lock_while_a_stream_finishes_journals_the_charge_and_a_restart_replays_it(
        upstream, tmp_path):
    """Another connection holds SQLite's write lock while a stream finishes, and until the gateway
    has stopped (the issue's 20 s lock; what fails the settle is SQLite's busy timeout,
    AICREDITS_SQLITE_BUSY_TIMEOUT, 1 s here instead of 10 s). The settle fails ("database is
    locked"), is retried for AICREDITS_SETTLE_RETRY_SECONDS, then goes to the journal; the gateway
    stops; a new one starts on the same files and replays it."""
    db_file = tmp_path / "aicredits.db"
    db = f"sqlite:///{db_file}"
    env = {"AICREDITS_SETTLE_RETRY_SECONDS": "1", "AICREDITS_SQLITE_BUSY_TIMEOUT": "1"}
    locked, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_write_lock, args=(str(db_file), locked, release))
    try:
        async with running(db, upstream, tmp_path, **env) as first:
            key = await first.new_key(100_000_000)
            charge = await charge_of(first)
            upstream.enqueue(Scenario(content=WORDS, chunk_delay=0.1))
            stream = asyncio.create_task(first.client.post("/v1/chat/completions", json=BODY,
                                                           headers={**key["headers"], "x-request-id": "locked-1"}))
            await asyncio.sleep(0.3)          # the hold is made; the stream is running
            locker.start()
            assert locked.wait(5)
            r = await stream
            assert_whole_answer(r, charge)
            (journaled,) = journal_files(tmp_path)
            assert json.loads(journaled.read_text())["call_id"]
            assert await first.usage(key) == []    # readers still read: nothing was written
    finally:
        release.set()
        if locker.is_alive():
            await asyncio.to_thread(locker.join)   # the lock is gone; the first gateway is gone

    async with running(db, upstream, tmp_path, **env) as second:
        assert journal_files(tmp_path) == []   # replayed at start
        await assert_charged_once(second, key, ["locked-1"], charge)


# ---------------------------------------------------------------- PostgreSQL: connection resets
@pytest.fixture
def pg_url(make_pg_db, pg_template) -> str:
    return make_pg_db(template=pg_template)   # at head already: the gateway's migrate() has nothing to do


async def upstream_has(upstream, n: int) -> None:
    """Until the fake upstream has received `n` chat requests (their holds are made: a call takes
    its hold before it asks the provider), at most 10 s."""
    deadline = time.monotonic() + 10
    while len(upstream.chat_requests()) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert len(upstream.chat_requests()) >= n


async def six_streams(g, key: dict, upstream, proxy: TcpProxy, mode: str, window: float) -> list:
    """Six streams whose deltas all arrive at once, then a 1 s pause before their finish: from when
    all six have their holds, and while they finish, the proxy is in `mode` for `window` seconds."""
    upstream.enqueue(*[Scenario(content=WORDS, chunk_delay=0.01, stall_after=len(split_content(WORDS)),
                                stall_seconds=1.0) for _ in range(6)])
    rids = [f"{mode}-{i}" for i in range(6)]
    asked = len(upstream.chat_requests())
    calls = [asyncio.create_task(g.client.post("/v1/chat/completions", json=BODY,
                                               headers={**key["headers"], "x-request-id": rid})) for rid in rids]
    await upstream_has(upstream, asked + 6)
    proxy.set_mode(mode)
    await asyncio.sleep(window)
    proxy.set_mode("pass")
    return rids, await asyncio.gather(*calls)


async def test_postgres_connections_reset_while_six_streams_finish(pg_url, upstream, tmp_path):
    """Every settle fails on a reset connection (before its COMMIT, then after it: the transaction
    committed and only the answer was lost); the retries land each charge exactly once."""
    direct = pg_url
    proxy = await TcpProxy().start()
    try:
        via = proxy.dsn(PG_ADMIN_DSN, direct.rsplit("/", 1)[1])
        async with running(via, upstream, tmp_path, admin_url=direct) as g:
            key = await g.new_key(100_000_000)
            charge = await charge_of(g)
            all_rids = []
            for mode in ("reset", "reset_commit"):
                before = proxy.resets
                rids, answers = await six_streams(g, key, upstream, proxy, mode, window=1.5)
                for r in answers:
                    assert_whole_answer(r, charge)
                assert proxy.resets > before
                all_rids += rids
                await assert_charged_once(g, key, all_rids, charge)
            assert journal_files(tmp_path) == []
    finally:
        await proxy.stop()


async def test_postgres_down_longer_than_the_retries_journals_and_the_sweeper_replays(
        pg_url, upstream, tmp_path):
    """PostgreSQL unreachable past AICREDITS_SETTLE_RETRY_SECONDS: the settlements go to the journal,
    the holds stay (their leases outlast the outage), and the sweeper lands them once it is back."""
    direct = pg_url
    proxy = await TcpProxy().start()
    env = {"AICREDITS_SETTLE_RETRY_SECONDS": "1", "AICREDITS_HOLD_LEASE_SECONDS": "6"}
    try:
        via = proxy.dsn(PG_ADMIN_DSN, direct.rsplit("/", 1)[1])
        async with running(via, upstream, tmp_path, admin_url=direct, **env) as g:
            key = await g.new_key(100_000_000)
            charge = await charge_of(g)
            upstream.enqueue(*[Scenario(content=WORDS, chunk_delay=0.01, stall_after=6, stall_seconds=1.0)
                               for _ in range(6)])
            rids = [f"down-{i}" for i in range(6)]
            calls = [asyncio.create_task(g.client.post("/v1/chat/completions", json=BODY,
                                                       headers={**key["headers"], "x-request-id": rid}))
                     for rid in rids]
            await upstream_has(upstream, 6)
            proxy.set_mode("down")
            for r in await asyncio.gather(*calls):
                assert_whole_answer(r, charge)
            assert len(journal_files(tmp_path)) == 6
            assert (await g.admin.wallet(key["email"]))["held"] > 0   # the holds wait for their settlements
            proxy.set_mode("pass")
            deadline = time.monotonic() + 10
            while journal_files(tmp_path) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert journal_files(tmp_path) == []
            await assert_charged_once(g, key, rids, charge)
    finally:
        await proxy.stop()
