"""Quota slices settled before the answer (services/quota.py, `settle_before_answer`; the mode
`AICREDITS_QUOTA_SLICES=on` runs unless `AICREDITS_QUOTA_DEFERRED=on`), against the real stores,
SQLite and PostgreSQL: a call alone takes a per-call hold; calls that overlap share a slice; each
answer waits for the batch that settles its charge, so its usage row and ledger entry exist when
it returns; the batch that settles the slice's last running call gives the slice back, so the
wallet reads exactly as with per-call holds once no call runs; a batch that fails answers as a
journaled settle does and lands on a retry."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aicredits.infra.journal import GrantJournal
from aicredits.services.billing import Billing
from aicredits.services.quota import Quota
from aicredits.store.billing_sql import SLICE_PREFIX
from tests.services.test_quota import INR, CountingStore, holds, settlement
from tests.store.test_billing_store import HOLD, key_row, new_key, opened, planner


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


def billing(env, tmp_path, **kw) -> tuple[Billing, Quota, CountingStore]:
    store = CountingStore(env.store)
    quota = Quota(store, GrantJournal(tmp_path / "grants"), settle_before_answer=True, **kw)
    return Billing(store, quota=quota), quota, store


async def test_a_call_alone_takes_a_per_call_hold(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 100 * INR)
        b, quota, store = billing(env, tmp_path)
        for _ in range(3):                                  # one after the other: never two at once
            call_id = uuid.uuid4().hex
            await b.reserve(call_id, auth, planner())
            assert await holds(env) == [(call_id, HOLD)]
            result = await b.settle(settlement(call_id, auth, 4_000))
            assert await holds(env) == []
            assert result.available == result.balance
        assert "grant" not in store.calls and "charge_slice" not in store.calls
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (100 * INR - 12_000, 0)
        await quota.close()


async def test_overlapping_calls_share_a_slice_settled_before_each_answer(db_url, tmp_path):
    async with opened(db_url) as env:
        email, created, auth = await new_key(env, 100 * INR, limit=50 * INR)
        b, quota, store = billing(env, tmp_path)
        first = uuid.uuid4().hex
        await b.reserve(first, auth, planner())             # alone: a per-call hold
        ids = [uuid.uuid4().hex for _ in range(6)]
        for call_id in ids:                                 # while it runs: a slice
            await b.reserve(call_id, auth, planner())
        assert store.calls.get("grant") == 1
        slices = [(c, a) for c, a in await holds(env) if c.startswith(SLICE_PREFIX)]
        assert len(slices) == 1 and slices[0][1] == 64 * HOLD

        # two answers at once: one batch settles both (group commit), before either returns
        r1, r2 = await asyncio.gather(b.settle(settlement(ids[0], auth, 7_000)),
                                      b.settle(settlement(ids[1], auth, 5_000)))
        usage = {u["call_id"]: u for u in await env.admin.usage(email, 20)}
        assert {ids[0], ids[1]} <= set(usage)               # their usage rows exist when they return
        w = await env.admin.wallet(email)
        entries = {e["call_id"]: e for e in w["entries"] if e["kind"] == "charge"}
        # x-aicredits-balance: the balance its own ledger entry left
        assert (r1.balance, r2.balance) == (entries[ids[0]]["balance_after"], entries[ids[1]]["balance_after"])
        assert sorted([r1.balance, r2.balance]) == [100 * INR - 12_000, 100 * INR - 7_000]
        # available: minus the first call's per-call hold and the four slice calls still running
        assert r2.balance - r2.available == HOLD + 4 * HOLD
        assert store.calls["charge_slice"] == 1

        for call_id in ids[2:]:
            await b.settle(settlement(call_id, auth, 1_000))
        # the last running call's batch gave the slice back: only the per-call hold is left
        assert await holds(env) == [(first, HOLD)]
        await b.settle(settlement(first, auth, 2_000))
        w = await env.admin.wallet(email)
        spent = 12_000 + 4 * 1_000 + 2_000
        assert (w["balance"], w["held"], w["total_spent"]) == (100 * INR - spent, 0, spent)
        k = await key_row(env, email, created["id"])
        assert (k["spent"], k["held"]) == (spent, 0)
        assert await env.admin.verify() == []
        await quota.close()
        assert not list((tmp_path / "grants").glob("*.jsonl"))


class FailingOnce(CountingStore):
    """charge_slice fails the first time, as a database that drops a connection."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.failed = False

    async def charge_slice(self, *args, **kwargs):
        self.calls["charge_slice"] = self.calls.get("charge_slice", 0) + 1
        if not self.failed:
            self.failed = True
            raise ConnectionError("connection reset")
        return await self.store.charge_slice(*args, **kwargs)


async def test_a_failed_batch_answers_pending_and_lands_on_a_retry(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 100 * INR)
        store = FailingOnce(env.store)
        quota = Quota(store, GrantJournal(tmp_path / "grants"), settle_before_answer=True)
        b = Billing(store, quota=quota)
        ids = [uuid.uuid4().hex for _ in range(3)]
        for call_id in ids:
            await b.reserve(call_id, auth, planner())
        result = await b.settle(settlement(ids[1], auth, 3_000))
        assert result.pending and result.charged == 3_000 and result.balance is None
        await quota.flush()                                 # the next round (every flush interval)
        w = await env.admin.wallet(email)
        assert w["balance"] == 100 * INR - 3_000
        for call_id in (ids[0], ids[2]):
            assert not (await b.settle(settlement(call_id, auth, 3_000))).pending
        assert await holds(env) == []                       # the last slice call's batch gave it back
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (100 * INR - 9_000, 0)
        assert await env.admin.verify() == []
        await quota.close()
