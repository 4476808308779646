"""The billing hot path (key lookup, hold, settle, sweep) driven directly against the store,
the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction

import pytest
from sqlalchemy import inspect

from aicredits.domain.keys import hash_key
from aicredits.domain.reservation import HoldPlan, Refusal, plan_hold
from aicredits.ports import HoldRequest, KeyAuth, KeyRevoked, Settlement, SettleResult
from aicredits.services.admin import Admin, AdminError
from aicredits.settings import load_settings
from aicredits.store.db import _alembic_config, make_engine, migrate
from aicredits.wiring import open_billing_store

HOLD = 10_000            # micros: what `planner()` reserves (10 output tokens at 1000 micros each)
TTL_MS = 60_000


@dataclass
class Env:
    url: str
    engine: object
    admin: Admin
    store: object


@asynccontextmanager
async def opened(url: str):
    """A migrated database, its Admin and its hot-path billing store (all on this test's loop)."""
    engine = make_engine(url)
    await migrate(engine, url)
    store = await open_billing_store(load_settings({"AICREDITS_DATABASE_URL": url}))
    try:
        yield Env(url, engine, Admin(engine), store)
    finally:
        await store.close()
        await engine.dispose()


def planner(max_tokens: int = 10):
    def plan(available: int, key_headroom: int | None) -> HoldPlan:
        return plan_hold(available=available, key_headroom=key_headroom, prompt_cost=Fraction(0),
                         output_price=Fraction(1000), requested_max=max_tokens, model_cap=None)
    return plan


def hold_request(auth: KeyAuth, *, expires_in_ms: int = TTL_MS, plan=None, key_id: str | None = "auth",
                 call_id: str | None = None) -> HoldRequest:
    now = int(time.time() * 1000)
    return HoldRequest(call_id or uuid.uuid4().hex, auth.account_id, auth.key_id if key_id == "auth" else key_id,
                       now, now + expires_in_ms, plan or planner())


def usage_row(req: HoldRequest, status: int = 200, prompt: int = 3, completion: int = 4) -> dict:
    return {"call_id": req.call_id, "request_id": "req-" + req.call_id, "account_id": req.account_id,
            "key_id": req.key_id, "model": "openai/gpt-4o-mini", "provider": "openai", "deployment": "openai",
            "endpoint": "chat", "stream": False, "prompt_tokens": prompt, "completion_tokens": completion,
            "cache_read_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "reasoning_tokens": 0,
            "units": prompt + completion, "latency_ms": 12, "overhead_ms": 1, "status": status,
            "cache": "bypass", "end_state": "completed", "error": None, "created_at": int(time.time() * 1000)}


def settlement(req: HoldRequest, charge: int) -> Settlement:
    return Settlement(req.call_id, req.account_id, req.key_id, charge, usage_row(req), note="test")


async def new_key(env: Env, credits: int, limit: int | None = None) -> tuple[str, dict, KeyAuth]:
    email = f"u-{uuid.uuid4().hex[:8]}@example.com"
    created = await env.admin.create_key(email, name="test key", credits=credits, limit=limit)
    auth = await env.store.find_key(hash_key(created["key"]))
    assert auth is not None
    return email, created, auth


async def key_row(env: Env, email: str, key_id: str) -> dict:
    rows = [r for r in await env.admin.list_keys(email) if r["id"] == key_id]
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------------------- tests
async def test_migrations_are_idempotent(db_url):
    engine = make_engine(db_url)
    try:
        await migrate(engine, db_url)
        await migrate(engine, db_url)
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"accounts", "wallets", "ledger_entries", "api_keys", "holds", "usage_records"} <= names
        out = await Admin(engine).create_key("twice@example.com", credits=1_000_000)
        assert out["balance"] == 1_000_000
        await migrate(engine, db_url)   # a third time, with data in it: nothing changes
        assert (await Admin(engine).wallet("twice@example.com"))["balance"] == 1_000_000
    finally:
        await engine.dispose()


async def test_find_key_known_unknown_and_revoked(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 5_000_000, limit=2_000_000)
        assert auth.key_id == created["id"]
        assert auth.name == "test key"
        assert auth.limit_micros == 2_000_000
        acct = (await env.admin.wallet(email))["account"]
        assert acct == email
        assert await env.store.find_key(hash_key("sk-" + "0" * 64)) is None
        assert await env.admin.revoke_key(created["id"]) is True
        assert await env.store.find_key(hash_key(created["key"])) is None


async def test_reserve_then_settle_moves_money_exactly(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000)
        req = hold_request(auth)
        plan = await env.store.reserve(req)
        assert plan.amount == HOLD
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["available"]) == (1_000_000, HOLD, 1_000_000 - HOLD)
        k = await key_row(env, email, created["id"])
        assert (k["held"], k["spent"]) == (HOLD, 0)
        view = await env.store.credits(auth.account_id, auth.key_id)
        assert view["held"] == HOLD and view["key"]["held"] == HOLD

        result = await env.store.settle(settlement(req, 7_321))
        assert isinstance(result, SettleResult)
        assert result == SettleResult(charged=7_321, balance=1_000_000 - 7_321, available=1_000_000 - 7_321)
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_added"], w["total_spent"]) == (992_679, 0, 1_000_000, 7_321)
        k = await key_row(env, email, created["id"])
        assert (k["held"], k["spent"]) == (0, 7_321)

        charge = w["entries"][0]
        assert charge["kind"] == "charge"
        assert charge["amount"] == -7_321
        assert charge["balance_after"] == 992_679
        assert charge["call_id"] == req.call_id
        assert charge["key_id"] == created["id"]
        assert sum(e["amount"] for e in w["entries"]) == w["balance"]

        rows = await env.admin.usage(email, 10)
        assert len(rows) == 1
        u = rows[0]
        assert (u["call_id"], u["cost"], u["hold"], u["status"]) == (req.call_id, 7_321, HOLD, 200)
        assert (u["prompt_tokens"], u["completion_tokens"], u["key_id"]) == (3, 4, created["id"])
        assert await env.admin.verify() == []


async def test_settle_caps_the_charge_at_the_hold(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000)
        req = hold_request(auth)
        await env.store.reserve(req)
        result = await env.store.settle(settlement(req, HOLD * 5))
        assert result.charged == HOLD
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000 - HOLD, 0, HOLD)
        assert (await key_row(env, email, created["id"]))["spent"] == HOLD
        assert (await env.admin.usage(email, 1))[0]["cost"] == HOLD
        assert await env.admin.verify() == []


async def test_zero_charge_releases_the_hold_without_a_ledger_entry(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        req = hold_request(auth)
        await env.store.reserve(req)
        result = await env.store.settle(settlement(req, 0))
        assert result.charged == 0 and result.balance == 1_000_000
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000, 0, 0)
        assert [e["kind"] for e in w["entries"]] == ["grant"]
        assert (await env.admin.usage(email, 1))[0]["cost"] == 0
        assert await env.admin.verify() == []


async def test_refusal_leaves_nothing_held(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, HOLD - 1)
        with pytest.raises(Refusal) as info:
            await env.store.reserve(hold_request(auth))
        assert "max_tokens <= 9 would fit" in info.value.message
        assert info.value.key_limited is False
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (HOLD - 1, 0)
        assert (await key_row(env, email, created["id"]))["held"] == 0
        assert await env.admin.verify() == []
        # the store still works after a refusal: a smaller hold fits
        plan = await env.store.reserve(hold_request(auth, plan=planner(9)))
        assert plan.amount == 9_000


async def test_key_limit_bounds_holds(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000, limit=HOLD + HOLD // 2)
        first = hold_request(auth)
        await env.store.reserve(first)
        with pytest.raises(Refusal) as info:
            await env.store.reserve(hold_request(auth))
        assert info.value.key_limited is True
        assert "key's credit limit" in info.value.message
        w = await env.admin.wallet(email)
        assert w["held"] == HOLD
        await env.store.settle(settlement(first, HOLD))
        k = await key_row(env, email, created["id"])
        assert (k["spent"], k["held"]) == (HOLD, 0)
        with pytest.raises(Refusal):   # 5,000 of headroom left on the key: 10 tokens do not fit
            await env.store.reserve(hold_request(auth))


async def test_reserve_against_a_revoked_key_raises(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000)
        await env.admin.revoke_key(created["id"])
        with pytest.raises(KeyRevoked):
            await env.store.reserve(hold_request(auth))
        w = await env.admin.wallet(email)
        assert w["held"] == 0
        assert (await key_row(env, email, created["id"]))["held"] == 0


async def test_sweep_releases_expired_holds_only(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000)
        stale = hold_request(auth, expires_in_ms=-1_000)
        fresh = hold_request(auth, plan=planner(7))
        await env.store.reserve(stale)
        await env.store.reserve(fresh)
        assert (await env.admin.wallet(email))["held"] == HOLD + 7_000
        problems = await env.admin.verify()
        assert len(problems) == 1 and stale.call_id in str(problems[0])   # verify names the orphaned hold

        assert await env.store.sweep(int(time.time() * 1000)) == 1
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (1_000_000, 7_000)
        assert (await key_row(env, email, created["id"]))["held"] == 7_000
        assert await env.store.sweep(int(time.time() * 1000)) == 0   # nothing more to release
        assert await env.admin.verify() == []

        # a late settle of the swept call never charges past the free money, and nothing leaks
        late = await env.store.settle(settlement(stale, 3_000))
        assert late.charged == 3_000
        done = await env.store.settle(settlement(fresh, 5_000))
        assert done.charged == 5_000
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000 - 8_000, 0, 8_000)
        k = await key_row(env, email, created["id"])
        assert (k["held"], k["spent"]) == (0, 8_000)
        assert await env.admin.verify() == []


async def test_late_settle_after_sweep_never_goes_below_zero(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, _created, auth = await new_key(env, HOLD)
        stale = hold_request(auth, expires_in_ms=-1_000)
        await env.store.reserve(stale)
        assert await env.store.sweep(int(time.time() * 1000)) == 1
        other = hold_request(auth, plan=planner(8))   # the freed money is held by another call
        await env.store.reserve(other)
        late = await env.store.settle(settlement(stale, HOLD))
        assert late.charged == HOLD - 8_000
        await env.store.settle(settlement(other, 8_000))
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (0, 0)
        assert await env.admin.verify() == []


async def test_concurrent_reserves_never_overspend(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 20 * HOLD)
        reqs = [hold_request(auth) for _ in range(50)]
        results = await asyncio.gather(*(env.store.reserve(r) for r in reqs), return_exceptions=True)
        ok = [(r, p) for r, p in zip(reqs, results) if isinstance(p, HoldPlan)]
        refused = [p for p in results if isinstance(p, Refusal)]
        others = [p for p in results if not isinstance(p, (HoldPlan, Refusal))]
        assert others == []
        assert len(ok) == 20 and len(refused) == 30
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["available"]) == (20 * HOLD, 20 * HOLD, 0)
        assert (await key_row(env, email, created["id"]))["held"] == 20 * HOLD
        assert await env.admin.verify() == []

        settled = await asyncio.gather(*(env.store.settle(settlement(r, 6_001)) for r, _ in ok))
        assert all(s.charged == 6_001 for s in settled)
        assert sorted(s.balance for s in settled) == [20 * HOLD - 6_001 * i for i in range(20, 0, -1)]
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (20 * HOLD - 20 * 6_001, 0, 20 * 6_001)
        k = await key_row(env, email, created["id"])
        assert (k["held"], k["spent"]) == (0, 20 * 6_001)
        assert len(await env.admin.usage(email, 100)) == 20
        assert await env.admin.verify() == []


async def test_ping_and_credits_view(migrated_db_url):
    async with opened(migrated_db_url) as env:
        _email, _created, auth = await new_key(env, 2_500_000, limit=1_000_000)
        await env.store.ping()
        view = await env.store.credits(auth.account_id, auth.key_id)
        assert view["balance"] == 2_500_000 and view["held"] == 0
        assert view["total_added"] == 2_500_000 and view["total_spent"] == 0
        assert view["key"] == {"name": "test key", "limit": 1_000_000, "spent": 0, "held": 0}
        assert (await env.store.credits(auth.account_id, None))["key"] is None


# ---------------------------------------------------------------------------- rate limits (migration 0002)
async def test_find_key_carries_the_rate_limits(migrated_db_url):
    async with opened(migrated_db_url) as env:
        _email, created, auth = await new_key(env, 1_000_000)
        assert (auth.rpm, auth.tpm) == (None, None)              # unlimited by default
        limited = await env.admin.create_key(f"r-{uuid.uuid4().hex[:8]}@example.com", rpm=60, tpm=90_000)
        got = await env.store.find_key(hash_key(limited["key"]))
        assert (got.rpm, got.tpm) == (60, 90_000)
        assert await env.admin.set_rate_limits(created["id"], rpm=5) == {"id": created["id"], "rpm": 5,
                                                                          "tpm": None}
        assert await env.admin.set_rate_limits(limited["id"], tpm=None) == {"id": limited["id"], "rpm": 60,
                                                                             "tpm": None}
        assert (await env.store.find_key(hash_key(created["key"]))).rpm == 5
        for bad in ({"rpm": 0}, {"tpm": -1}, {"rpm": True}, {"tpm": 10**10}, {"burst": 3}):
            with pytest.raises(AdminError):
                await env.admin.set_rate_limits(created["id"], **bad)
        with pytest.raises(AdminError):
            await env.admin.set_rate_limits("key_unknown", rpm=1)


def head_revision() -> str:
    """The newest migration (later migrations move it; these tests check they upgrade to it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


async def _at_revision(engine, url: str, revision: str) -> None:
    from alembic import command

    cfg = _alembic_config(url)

    def run(connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    async with engine.begin() as conn:
        await conn.run_sync(run)


async def test_upgrade_from_0001_keeps_existing_keys_and_leaves_them_unlimited(db_url):
    """A database made by migration 0001 with keys, a wallet and a ledger in it: migration 0002
    adds rpm/tpm as NULL (unlimited) and nothing else changes."""
    from sqlalchemy import text

    engine = make_engine(db_url)
    try:
        await _at_revision(engine, db_url, "0001")
        secret = "sk-" + "ab" * 32
        async with engine.begin() as conn:
            cols = {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("api_keys"))}
            assert "rpm" not in cols and "tpm" not in cols
            await conn.execute(text("INSERT INTO accounts (id, email, name, role, created_at) "
                                    "VALUES (1, 'old@example.com', '', 'user', 1)"))
            await conn.execute(text("INSERT INTO wallets (account_id, balance, held, total_added, total_spent, "
                                    "updated_at) VALUES (1, 5000000, 0, 5000000, 0, 1)"))
            await conn.execute(text("INSERT INTO ledger_entries (account_id, kind, amount, balance_after, note, "
                                    "created_at) VALUES (1, 'grant', 5000000, 5000000, 'before 0002', 1)"))
            await conn.execute(text("INSERT INTO api_keys (id, account_id, name, key_hash, display, limit_micros, "
                                    "spent, held, created_at) VALUES ('key_old', 1, 'old', :h, 'sk-abab…abab', "
                                    "2000000, 0, 0, 1)"), {"h": hash_key(secret)})
        await migrate(engine, db_url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head_revision()
        admin = Admin(engine)
        (row,) = await admin.list_keys("old@example.com")
        assert (row["id"], row["name"], row["limit"], row["rpm"], row["tpm"]) == ("key_old", "old", 2_000_000,
                                                                                   None, None)
        assert (await admin.wallet("old@example.com"))["balance"] == 5_000_000
        assert await admin.verify() == []
        store = await open_billing_store(load_settings({"AICREDITS_DATABASE_URL": db_url}))
        try:
            auth = await store.find_key(hash_key(secret))
            assert (auth.key_id, auth.limit_micros, auth.rpm, auth.tpm) == ("key_old", 2_000_000, None, None)
            await admin.set_rate_limits("key_old", rpm=10, tpm=1000)
            auth = await store.find_key(hash_key(secret))
            assert (auth.rpm, auth.tpm) == (10, 1000)
        finally:
            await store.close()
    finally:
        await engine.dispose()
