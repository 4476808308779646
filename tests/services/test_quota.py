"""Quota slices (services/quota.py) against the real stores, SQLite and PostgreSQL: a slice granted
in one transaction, calls authorized in memory against it, charges journaled and settled in one
batch, top-ups, the return of an idle slice, the per-call fallback of small wallets and keys, and
a process killed with an open slice (its journal replayed, its slice released at lease expiry)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from aicredits.domain.reservation import Refusal
from aicredits.errors import InsufficientCredits
from aicredits.infra.journal import GrantJournal
from aicredits.ports import Settlement
from aicredits.services.billing import Billing
from aicredits.services.quota import Quota
from aicredits.store.billing_sql import SLICE_PREFIX
from tests.store.test_billing_store import HOLD, key_row, new_key, opened, planner

INR = 1_000_000


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


class CountingStore:
    """The real store, counting the transactions the quota asks of it."""

    def __init__(self, store) -> None:
        self.store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)
        return counted


def billing_with_quota(env, journal_dir: Path, **kw) -> tuple[Billing, Quota, CountingStore]:
    store = CountingStore(env.store)
    quota = Quota(store, GrantJournal(journal_dir), **kw)
    return Billing(store, quota=quota), quota, store


def settlement(call_id: str, auth, charge: int, end_state: str = "completed") -> Settlement:
    row = {"call_id": call_id, "request_id": "req-" + call_id, "account_id": auth.account_id, "key_id": auth.key_id,
           "model": "openai/gpt-4o-mini", "provider": "openai", "deployment": "openai", "endpoint": "chat",
           "stream": False, "prompt_tokens": 3, "completion_tokens": 4, "cache_read_tokens": 0,
           "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "units": 7,
           "latency_ms": 12, "overhead_ms": 1, "status": 200, "cache": "bypass", "end_state": end_state,
           "error": None, "created_at": int(time.time() * 1000)}
    return Settlement(call_id, auth.account_id, auth.key_id, charge, row, note="test")


async def holds(env) -> list[tuple[str, int]]:
    async with env.engine.connect() as conn:
        from sqlalchemy import text
        rows = (await conn.execute(text("SELECT call_id, amount FROM holds ORDER BY call_id"))).all()
    return [(r[0], r[1]) for r in rows]


async def test_one_grant_then_calls_in_memory_then_one_batch_settle(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 100 * INR)
        billing, quota, store = billing_with_quota(env, tmp_path / "grants")
        ids = [uuid.uuid4().hex for _ in range(10)]
        for call_id in ids:
            plan = await billing.reserve(call_id, auth, planner())
            assert plan.amount == HOLD
        assert store.calls == {"grant": 1}                 # one transaction for ten holds
        (slice_id, amount), = await holds(env)
        assert slice_id.startswith(SLICE_PREFIX) and amount == 64 * HOLD
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (100 * INR, 64 * HOLD)   # the slice is a hold in the database

        results = [await billing.settle(settlement(c, auth, 7_000)) for c in ids]
        assert [r.charged for r in results] == [7_000] * 10
        # the balance after each charge, minus open holds (this slice only as far as its calls hold it)
        assert [r.available for r in results] == [100 * INR - 7_000 * (i + 1) - HOLD * (9 - i) for i in range(10)]
        assert results[-1].balance == 100 * INR - 70_000
        assert store.calls == {"grant": 1}                 # nothing written yet but the journal
        assert len(quota.journal.read(*_only_segment(tmp_path / "grants"))) == 10

        await quota.flush()
        assert store.calls == {"grant": 1, "charge_slice": 1}   # ten calls settled in one transaction
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (100 * INR - 70_000, 64 * HOLD - 70_000, 70_000)
        entries = [e for e in reversed(w["entries"]) if e["kind"] == "charge"]
        assert [e["balance_after"] for e in entries] == [100 * INR - 7_000 * (i + 1) for i in range(10)]
        assert {e["call_id"] for e in entries} == set(ids)
        usage = await env.admin.usage(email, 20)
        assert sorted((u["cost"], u["hold"]) for u in usage) == [(7_000, HOLD)] * 10
        assert await env.admin.verify() == []

        await quota.flush()                                 # a second flush of the same charges: nothing
        quota.idle_seconds = 0
        await quota._return_idle()
        await asyncio.gather(*list(quota._background))
        assert await holds(env) == []
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (100 * INR - 70_000, 0)
        assert await env.admin.verify() == []
        await quota.close()
        assert not list((tmp_path / "grants").glob("*.jsonl"))   # everything landed: no journal left


def _only_segment(directory: Path):
    files = sorted(directory.glob("*.jsonl"))
    assert len(files) == 1
    return os.open(files[0], os.O_RDONLY), files[0]


async def test_top_up_when_the_slice_runs_low_and_exact_after(db_url, tmp_path):
    async with opened(db_url) as env:
        email, created, auth = await new_key(env, 100 * INR)
        billing, quota, store = billing_with_quota(env, tmp_path / "grants", slice_calls=4)
        ids = [uuid.uuid4().hex for _ in range(9)]
        for call_id in ids:
            await billing.reserve(call_id, auth, planner())
        await asyncio.gather(*list(quota._background))
        assert store.calls["grant"] >= 3                    # 4 holds a grant: topped up as it ran low
        (_, amount), = await holds(env)
        assert amount >= 9 * HOLD
        k = await key_row(env, email, created["id"])
        assert k["held"] == amount                          # the key's held carries the slice too
        for call_id in ids:
            await billing.settle(settlement(call_id, auth, HOLD + 5_000))   # more than the hold: capped
        await quota.close()                                 # flush, then the slice goes back
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (100 * INR - 9 * HOLD, 0, 9 * HOLD)
        assert (await key_row(env, email, created["id"]))["spent"] == 9 * HOLD
        assert await env.admin.verify() == []


async def test_a_small_wallet_gets_per_call_holds(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 15 * HOLD)    # fewer than quota_min_calls (16) holds
        billing, quota, store = billing_with_quota(env, tmp_path / "grants")
        call_id = uuid.uuid4().hex
        await billing.reserve(call_id, auth, planner())
        assert await holds(env) == [(call_id, HOLD)]        # a per-call hold, as without slices
        result = await billing.settle(settlement(call_id, auth, 4_000))
        assert result.balance == 15 * HOLD - 4_000          # settled at once, in the database
        assert (await env.admin.wallet(email))["balance"] == 15 * HOLD - 4_000
        assert "charge_slice" not in store.calls
        # and when the wallet cannot pay: the per-call hold's exact 402
        poor = [uuid.uuid4().hex for _ in range(15)]
        with pytest.raises(InsufficientCredits):
            for c in poor:
                await billing.reserve(c, auth, planner())
        await quota.close()
        assert await env.admin.verify() == []              # holds still open are within their lease
        assert (await env.admin.wallet(email))["balance"] >= 0


async def test_a_key_limit_bounds_its_slices(db_url, tmp_path):
    async with opened(db_url) as env:
        email, created, auth = await new_key(env, 100 * INR, limit=40 * HOLD)
        billing, quota, _store = billing_with_quota(env, tmp_path / "grants")
        spent = 0
        refused = False
        for _ in range(60):
            call_id = uuid.uuid4().hex
            try:
                await billing.reserve(call_id, auth, planner())
            except InsufficientCredits:
                refused = True
                break
            k = await key_row(env, email, created["id"])
            assert k["spent"] + k["held"] <= 40 * HOLD      # slices and holds never pass the key's limit
            spent += (await billing.settle(settlement(call_id, auth, HOLD))).charged
            await quota.flush()
        assert refused and spent == 40 * HOLD
        await quota.close()
        k = await key_row(env, email, created["id"])
        assert (k["spent"], k["held"]) == (40 * HOLD, 0)
        assert await env.admin.verify() == []


async def test_two_slices_never_grant_more_than_the_balance(db_url, tmp_path):
    """Two processes' quotas on one wallet (two stores, as two processes have): every grant comes
    out of balance - held, so the slices and holds together never exceed the balance."""
    async with opened(db_url) as env, opened(db_url) as env2:
        email, _created, auth = await new_key(env, 64 * HOLD)
        b1, q1, _ = billing_with_quota(env, tmp_path / "a")
        b2, q2, _ = billing_with_quota(env2, tmp_path / "b")
        taken = []

        async def spend(billing) -> None:
            while True:
                call_id = uuid.uuid4().hex
                try:
                    await billing.reserve(call_id, auth, planner())
                except InsufficientCredits:
                    return
                w = await env.admin.wallet(email)
                assert w["held"] <= w["balance"]
                taken.append((billing, call_id))
        await asyncio.gather(spend(b1), spend(b2))
        assert len(taken) == 64                               # exactly what the wallet affords
        for billing, call_id in taken:
            await billing.settle(settlement(call_id, auth, HOLD))
        await q1.close()
        await q2.close()
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (0, 0, 64 * HOLD)
        assert await env.admin.verify() == []


def test_the_planner_refusal_is_the_per_call_holds():
    # the quota never answers 402 itself: a refusal in memory sends the call to a per-call hold
    with pytest.raises(Refusal):
        planner(10)(5_000, None)


CRASH = textwrap.dedent("""
    import asyncio, os, signal, sys, uuid
    from aicredits.wiring import open_billing_store
    from aicredits.infra.journal import GrantJournal
    from aicredits.services.billing import Billing
    from aicredits.services.quota import Quota
    from aicredits.settings import load_settings
    from aicredits.ports import KeyAuth
    from tests.services.test_quota import settlement
    from tests.store.test_billing_store import planner

    async def main():
        url, journal, account, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
        store = await open_billing_store(load_settings({"AICREDITS_DATABASE_URL": url}))
        quota = Quota(store, GrantJournal(journal), lease_ms=1_000)
        billing = Billing(store, lease_seconds=1.0, quota=quota)
        auth = KeyAuth(key, account, "k", None)
        ids = [uuid.uuid4().hex for _ in range(6)]
        for c in ids:
            await billing.reserve(c, auth, planner())
        for c in ids[:3]:                        # answered: journaled, the batch settle not run
            await billing.settle(settlement(c, auth, 7_000))
        await quota.flush()                      # one of them lands before the next two
        for c in ids[3:5]:
            await billing.settle(settlement(c, auth, 6_000))
        billing.track(ids[5], lambda: 2_500, lambda: settlement(ids[5], auth, 0).usage)
        await billing.renew()                    # a running call's progress: 2,500 so far
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
""")


async def test_a_killed_process_with_an_open_slice_comes_back_exact(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 100 * INR)
        journal = tmp_path / "grants"
        root = Path(__file__).resolve().parents[2]
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", CRASH, db_url, str(journal), str(auth.account_id), auth.key_id],
            capture_output=True, text=True, cwd=root, timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert "ready" in proc.stdout
        w = await env.admin.wallet(email)
        assert w["balance"] == 100 * INR - 21_000           # the first batch landed
        assert w["held"] == 64 * HOLD - 21_000              # the rest of the slice still held

        # another process on the same state directory: replays the journal before its sweep
        billing, quota, _ = billing_with_quota(env, journal)
        billing.lease_seconds = 1.0
        assert await quota.replay() == 6                    # 3 landed already (idempotent), 2 + 1 running
        w = await env.admin.wallet(email)
        charged = 3 * 7_000 + 2 * 6_000 + 2_500
        assert w["balance"] == 100 * INR - charged
        usage = {u["call_id"]: u for u in await env.admin.usage(email, 20)}
        assert len(usage) == 6
        assert sorted(u["end_state"] for u in usage.values()) == ["completed"] * 5 + ["gateway_lost"]
        assert not list(journal.glob("*.jsonl"))            # replayed and removed

        deadline = time.monotonic() + 10
        while await holds(env) and time.monotonic() < deadline:   # the dead process's slice lease runs out
            await billing.sweep()
            if await holds(env):
                await asyncio.sleep(0.05)
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (100 * INR - charged, 0, charged)
        assert await holds(env) == []
        assert await env.admin.verify() == []
        assert await quota.replay() == 0                    # nothing left to replay
        await quota.close()


def test_a_live_journal_is_never_replayed_a_dead_one_is(tmp_path):
    live = GrantJournal(tmp_path)
    live.append({"t": "c", "call_id": "a"})
    other = GrantJournal(tmp_path)
    assert other.orphans() == []                 # its process holds the lock
    live.close(landed=False)                     # as a killed process leaves it: lock gone, file kept
    (fd, path), = other.orphans()
    assert [r["call_id"] for r in other.read(fd, path)] == ["a"]
    other.done(fd, path, remove=True)
    assert not list(tmp_path.glob("*.jsonl"))


async def test_a_live_slice_is_renewed_and_never_swept(db_url, tmp_path):
    async with opened(db_url) as env:
        email, _created, auth = await new_key(env, 100 * INR)
        store = CountingStore(env.store)
        quota = Quota(store, GrantJournal(tmp_path / "grants"), lease_ms=1_000)
        billing = Billing(store, lease_seconds=1.0, quota=quota)
        call_id = uuid.uuid4().hex
        await billing.reserve(call_id, auth, planner())
        for _ in range(3):                                   # 1.5 s: past the first lease
            await asyncio.sleep(0.5)
            await billing.renew()
            assert await env.store.sweep(int(time.time() * 1000)) == 0
        (slice_id, _), = await holds(env)
        assert slice_id.startswith(SLICE_PREFIX)
        await billing.settle(settlement(call_id, auth, 1_000))
        await quota.close()
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (100 * INR - 1_000, 0)
        assert await env.admin.verify() == []
