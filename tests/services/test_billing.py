"""services/billing.py against real stores (SQLite and PostgreSQL): leases of calls that can no
longer be running stop being renewed, and the settle journal replays once however many processes
replay it."""

from __future__ import annotations

import asyncio
import time

import pytest

from aicredits.infra.journal import FileJournal
from aicredits.ports import KeyAuth, Settlement
from aicredits.services.billing import Billing
from tests.store.test_billing_store import HOLD, new_key, opened, planner, usage_row


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


async def test_a_hold_never_settled_is_left_to_the_sweeper(db_url):
    """A hold whose call never settles (a bug) is renewed only while the call could still be running
    (max_request_seconds + settle retries + 60 s), then swept, instead of held for as long as the
    process lives."""
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        billing = Billing(env.store, lease_seconds=0.6, max_call_seconds=0.0,
                          settle_retry_seconds=0.0)
        billing.max_lease_age = 1.0
        live = Billing(env.store, lease_seconds=0.6)
        await billing.reserve("never-settled", auth, planner())
        await live.reserve("still-running", auth, planner())
        started = time.monotonic()
        while time.monotonic() - started < 10 and not await env.admin.usage(email, 10):
            for b in (billing, live):      # until the never-settled hold is swept (at ~1.6 s: its last
                await b.renew()            # renewal before 1.0 s, then its 0.6 s lease), at most 10 s
                await b.sweep()
            await asyncio.sleep(0.1)
        assert time.monotonic() - started > 1.0    # never swept while it could still be running
        rows = {r["call_id"]: r for r in await env.admin.usage(email, 10)}
        assert list(rows) == ["never-settled"] and rows["never-settled"]["end_state"] == "gateway_lost"
        assert (await env.admin.wallet(email))["held"] == HOLD       # the running call's hold stays
        assert await env.admin.verify() == []


async def test_two_processes_replaying_one_journal_charge_once(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        journal = FileJournal(tmp_path / "settle-journal")
        first = Billing(env.store, journal=journal)
        second = Billing(env.store, journal=FileJournal(tmp_path / "settle-journal"))
        calls = []
        for i in range(5):
            call_id = f"journaled{i}"
            await first.reserve(call_id, auth, planner())
            req = _Req(call_id, auth)
            calls.append(call_id)
            journal.write(Settlement(call_id, auth.account_id, auth.key_id, 4_000, usage_row(req)))
        assert len(journal.pending()) == 5
        landed = await asyncio.gather(first.replay_journal(), second.replay_journal(), first.replay_journal())
        assert sum(landed) >= 5 and journal.pending() == []
        rows = await env.admin.usage(email, 10)
        assert sorted(r["call_id"] for r in rows) == calls and {r["cost"] for r in rows} == {4_000}
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000 - 20_000, 0, 20_000)
        assert await env.admin.verify() == []


class _Req:
    """What usage_row reads of a hold request."""

    def __init__(self, call_id: str, auth: KeyAuth) -> None:
        self.call_id, self.account_id, self.key_id = call_id, auth.account_id, auth.key_id


async def test_a_caller_gone_while_its_hold_is_made_leaves_no_hold_and_one_disconnect_row(db_url):
    """The client goes away while the store is still making the hold: the hold is made, then
    released at once with a usage row of status 499 (client_disconnect) and no charge; nothing
    stays held and the ledger verifies."""
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        billing = Billing(env.store)
        caller = asyncio.ensure_future(billing.reserve("gone-early", auth, planner()))
        await asyncio.sleep(0)          # the hold is being made (the store's round trip has begun)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        started = time.monotonic()
        while time.monotonic() - started < 10 and not await env.admin.usage(email, 10):
            await asyncio.sleep(0.02)   # the release runs once the hold exists
        await billing.drain()
        rows = await env.admin.usage(email, 10)
        assert [(r["call_id"], r["status"], r["end_state"], r["cost"]) for r in rows] == \
            [("gone-early", 499, "client_disconnect", 0)]
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000, 0, 0)
        assert await env.admin.verify() == []
