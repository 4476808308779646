"""`ledger verify` (Admin.verify) against a real ledger built by the hot path (grants, holds,
charges), then tampered with one way at a time, on SQLite and on PostgreSQL: each tampering is
found, named by its check and its first bad row."""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import text

from aicredits.domain.keys import hash_key
from aicredits.domain.ledger import KIND_RULES, Finding, kinds_with_sign
from aicredits.domain.reservation import plan_hold
from aicredits.ports import HoldRequest, Settlement
from aicredits.services.admin import Admin
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate
from aicredits.wiring import open_billing_store

INR = 1_000_000


@dataclass
class Ledger:
    engine: object
    admin: Admin
    store: object
    account_id: int
    key_id: str
    entries: list[dict]      # in id order: grant 5 INR, grant 1.5 INR, charge, charge
    usage_call: str          # the call id of the last settled call

    async def sql(self, statement: str, **params) -> list:
        async with self.engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []

    async def findings(self) -> dict[str, Finding]:
        found = await self.admin.verify()
        by_check = {f.check: f for f in found}
        assert len(by_check) == len(found), found   # each check reported once
        return by_check


def _plan(available, headroom):
    return plan_hold(available=available, key_headroom=headroom, prompt_cost=Fraction(0),
                     output_price=Fraction(1000), requested_max=100, model_cap=None)


async def _call(store, account_id: int, key_id: str, charge: int) -> str:
    now = int(time.time() * 1000)
    call_id = uuid.uuid4().hex
    await store.reserve(HoldRequest(call_id, account_id, key_id, now, now + 60_000, _plan))
    usage = {"call_id": call_id, "request_id": "r-" + call_id, "account_id": account_id, "key_id": key_id,
             "model": "demo/echo", "provider": "demo", "deployment": "demo", "endpoint": "chat", "stream": False,
             "prompt_tokens": 1, "completion_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0,
             "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "units": 2, "latency_ms": 1, "overhead_ms": 1,
             "status": 200, "cache": "bypass", "end_state": "completed", "error": None, "created_at": now}
    await store.settle(Settlement(call_id, account_id, key_id, charge, usage))
    return call_id


@asynccontextmanager
async def ledger(url: str):
    engine = make_engine(url)
    await migrate(engine, url)
    store = await open_billing_store(load_settings({"AICREDITS_DATABASE_URL": url}))
    admin = Admin(engine)
    try:
        email = f"v-{uuid.uuid4().hex[:6]}@example.com"
        made = await admin.create_key(email, credits=5 * INR, limit=2 * INR)
        await admin.grant(email, 1_500_000)
        auth = await store.find_key(hash_key(made["key"]))
        await _call(store, auth.account_id, auth.key_id, 1_234)
        last = await _call(store, auth.account_id, auth.key_id, 4_321)
        entries = list(reversed((await admin.wallet(email))["entries"]))
        assert [(e["kind"], e["amount"]) for e in entries] == [
            ("grant", 5 * INR), ("grant", 1_500_000), ("charge", -1_234), ("charge", -4_321)]
        yield Ledger(engine, admin, store, auth.account_id, auth.key_id, entries, last)
    finally:
        await store.close()
        await engine.dispose()


async def test_a_sound_ledger_passes_with_holds_open(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        assert await lg.admin.verify() == []
        now = int(time.time() * 1000)    # a call in flight: its hold is consistent, not a problem
        await lg.store.reserve(HoldRequest("in-flight", lg.account_id, lg.key_id, now, now + 60_000, _plan))
        assert await lg.admin.verify() == []


async def test_moving_one_inr_from_a_grant_into_a_charge(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        grant, charge = lg.entries[0], lg.entries[2]
        await lg.sql("UPDATE ledger_entries SET amount = amount - 1000000 WHERE id = :i", i=grant["id"])
        await lg.sql("UPDATE ledger_entries SET amount = amount + 1000000 WHERE id = :i", i=charge["id"])
        found = await lg.findings()
        # the sum of the entries still equals the balance; the chain and the signs do not hold
        assert "wallet balance" not in found
        assert f"entry {grant['id']} " in found["ledger chain"].first
        assert found["ledger chain"].count == 2          # the grant and the charge
        sign = found["ledger sign"]
        assert f"entry {charge['id']} " in sign.first and "charge of +998766" in sign.first
        assert "must be negative" in sign.first
        assert f"account {lg.account_id}" in found["wallet totals"].first
        assert f"key {lg.key_id} " in found["key spent"].first


async def test_a_middle_entrys_balance_after(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        middle = lg.entries[1]
        await lg.sql("UPDATE ledger_entries SET balance_after = 123 WHERE id = :i", i=middle["id"])
        found = await lg.findings()
        assert set(found) == {"ledger chain"}
        chain = found["ledger chain"]
        assert chain.first.startswith(f"entry {middle['id']} (account {lg.account_id}, grant): balance_after 123 ")
        assert "!= previous balance_after 5000000 + amount 1500000 = 6500000" in chain.first
        assert chain.count == 2                          # it, and the next entry that follows from it


async def test_a_keys_spent_set_to_zero(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        await lg.sql("UPDATE api_keys SET spent = 0 WHERE id = :k", k=lg.key_id)
        found = await lg.findings()
        assert set(found) == {"key spent"}
        assert found["key spent"].first == f"key {lg.key_id} (account {lg.account_id}): spent 0 != sum of its charges 5555"


async def test_a_wallets_totals_rewritten(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        await lg.sql("UPDATE wallets SET total_added = 9000000, total_spent = 0 WHERE account_id = :a",
                     a=lg.account_id)
        found = await lg.findings()
        assert set(found) == {"wallet totals"}
        text_ = found["wallet totals"].first
        assert text_.startswith(f"account {lg.account_id}: ")
        assert "total_added 9000000 != sum of its grant/topup/refund entries 6500000" in text_
        assert "total_spent 0 != sum of its charge/correction entries 5555" in text_


async def test_a_key_spent_above_its_limit(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        await lg.sql("UPDATE api_keys SET spent = 2000001 WHERE id = :k", k=lg.key_id)
        found = await lg.findings()
        assert set(found) == {"key spent", "key limit"}
        assert found["key limit"].first == (f"key {lg.key_id} (account {lg.account_id}): spent 2000001 is above "
                                            "its limit 2000000")


async def test_holds_against_open_calls(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        # a hold left behind for a call that was settled (it has a usage record): money held for nothing,
        # even with the wallet's and the key's held matching it
        now = int(time.time() * 1000)
        await lg.sql("INSERT INTO holds (call_id, account_id, key_id, amount, created_at, expires_at) "
                     "VALUES (:c, :a, :k, 777, :n, :e)", c=lg.usage_call, a=lg.account_id, k=lg.key_id,
                     n=now, e=now + 60_000)
        await lg.sql("UPDATE wallets SET held = held + 777 WHERE account_id = :a", a=lg.account_id)
        await lg.sql("UPDATE api_keys SET held = held + 777 WHERE id = :k", k=lg.key_id)
        found = await lg.findings()
        assert set(found) == {"hold settled"}
        assert found["hold settled"].first.startswith(f"hold {lg.usage_call} (account {lg.account_id}, 777 micro-INR)")

        # the wallet's and the key's held drifting from their holds
        await lg.sql("UPDATE wallets SET held = held + 1 WHERE account_id = :a", a=lg.account_id)
        await lg.sql("UPDATE api_keys SET held = 5 WHERE id = :k", k=lg.key_id)
        found = await lg.findings()
        assert found["wallet held"].first == f"account {lg.account_id}: held 778 != sum of its open holds 777"
        assert found["key held"].first == f"key {lg.key_id} (account {lg.account_id}): held 5 != sum of its open holds 777"


async def test_an_unknown_kind_and_the_first_of_many(migrated_db_url):
    async with ledger(migrated_db_url) as lg:
        await lg.sql("UPDATE ledger_entries SET kind = 'bonus' WHERE id = :i", i=lg.entries[1]["id"])
        await lg.sql("UPDATE ledger_entries SET amount = 0, balance_after = balance_after + 4321 WHERE id = :i",
                     i=lg.entries[3]["id"])
        found = await lg.findings()
        sign = found["ledger sign"]
        assert sign.first.startswith(f"entry {lg.entries[1]['id']} (account {lg.account_id}) has unknown kind 'bonus'")
        assert sign.count == 2
        assert str(sign).endswith("(and 1 more)")


def test_sign_rules_cover_every_kind():
    assert set(KIND_RULES) >= {"grant", "topup", "refund", "charge", "debit", "adjustment"}
    assert {"grant", "topup"} <= set(kinds_with_sign(1))
    assert {"refund", "debit", "charge"} <= set(kinds_with_sign(-1))     # a top-up refunded debits the wallet
    assert "adjustment" in kinds_with_sign(0)                           # either way, never 0
    assert set(kinds_with_sign(1)) | set(kinds_with_sign(-1)) | set(kinds_with_sign(0)) == set(KIND_RULES)


async def test_verify_while_calls_are_billed_reports_nothing(migrated_db_url):
    """Calls reserve and settle (wallet, key, hold, ledger and usage rows change together) while
    verify runs again and again: no run reports a problem that a live gateway's own writes cause."""
    import asyncio

    async with ledger(migrated_db_url) as lg:
        stop = asyncio.Event()

        async def calls():
            n = 0
            while not stop.is_set() and n < 200:
                await _call(lg.store, lg.account_id, lg.key_id, 7)
                n += 1
            return n

        billing = asyncio.create_task(calls())
        runs = []
        try:
            for _ in range(15):
                runs.append(await lg.admin.verify())
        finally:
            stop.set()
            made = await billing
        assert made > 0
        assert all(r == [] for r in runs), [r for r in runs if r]
        assert await lg.admin.verify() == []
