"""Leases, the sweeper's settlement from recorded progress, and the one rule for settling without a
hold (domain/ledger.py `settle_without_hold`), driven against the store: SQLite and PostgreSQL."""

from __future__ import annotations

import time

import orjson

from aicredits.ports import Settlement
from tests.store.test_billing_store import HOLD, hold_request, key_row, new_key, opened, planner, usage_row

LIMIT = 100_000          # 0.1 INR: the key limit of the reproduction
SWEPT = "gateway_lost"   # the documented end state of a call whose process died


def now_ms() -> int:
    return int(time.time() * 1000)


def done(req, charge: int, end_state: str = "completed", completion: int = 4) -> Settlement:
    row = dict(usage_row(req, completion=completion), end_state=end_state)
    return Settlement(req.call_id, req.account_id, req.key_id, charge, row, note="test")


async def ledger(env, email: str) -> list[tuple[str, int, str | None]]:
    """(kind, amount, call_id) of every entry after the grant, oldest first."""
    entries = (await env.admin.wallet(email))["entries"]
    return [(e["kind"], e["amount"], e["call_id"]) for e in reversed(entries) if e["kind"] != "grant"]


async def test_a_late_settle_never_takes_a_key_past_its_limit(migrated_db_url):
    """The reproduction: a call's hold is released while the call runs, a second call holds the
    same headroom, then the first settles. Before the fix the late charge was capped only by the
    wallet, and the key ended above its limit with `ledger verify` saying ok."""
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000, limit=LIMIT)   # 1 INR wallet, 0.1 INR key
        first = hold_request(auth, expires_in_ms=-1_000, plan=planner(100))  # holds the whole 0.1 INR
        await env.store.reserve(first)
        assert await env.store.sweep(now_ms()) == 1       # its lease ran out (no progress: nothing charged)
        second = hold_request(auth, plan=planner(100))     # the freed headroom, held again
        await env.store.reserve(second)

        late = await env.store.settle(done(first, 16_000))
        assert late.charged == 0                           # no headroom left on the key
        assert (await env.store.settle(done(second, LIMIT))).charged == LIMIT
        k = await key_row(env, email, created["id"])
        assert (k["spent"], k["held"]) == (LIMIT, 0)
        assert k["spent"] <= LIMIT
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (1_000_000 - LIMIT, 0)
        assert await env.admin.verify() == []


async def test_a_late_settle_takes_only_the_headroom_left(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000, limit=LIMIT)
        first = hold_request(auth, expires_in_ms=-1_000, plan=planner(50))
        await env.store.reserve(first)
        assert await env.store.sweep(now_ms()) == 1
        second = hold_request(auth, plan=planner(80))      # 80,000 held: 20,000 of headroom left
        await env.store.reserve(second)
        assert (await env.store.settle(done(first, 50_000))).charged == 20_000
        await env.store.settle(done(second, 80_000))
        assert (await key_row(env, email, created["id"]))["spent"] == LIMIT
        assert await env.admin.verify() == []


async def test_settle_is_idempotent_by_call_id(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        req = hold_request(auth)
        await env.store.reserve(req)
        first = await env.store.settle(done(req, 7_000))
        again = await env.store.settle(done(req, 7_000))
        other = await env.store.settle(done(req, 9_000, end_state="upstream_cut"))
        assert first.charged == again.charged == other.charged == 7_000
        assert again.balance == first.balance == 1_000_000 - 7_000
        assert await ledger(env, email) == [("charge", -7_000, req.call_id)]
        rows = await env.admin.usage(email, 10)
        assert [(r["cost"], r["end_state"]) for r in rows] == [(7_000, "completed")]
        assert await env.admin.verify() == []


async def test_a_renewed_lease_is_never_swept(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, _created, auth = await new_key(env, 1_000_000)
        req = hold_request(auth, expires_in_ms=200)
        await env.store.reserve(req)
        await env.store.renew(now_ms() + 60_000, [req.call_id], [])
        assert await env.store.sweep(now_ms() + 1_000) == 0
        assert (await env.admin.wallet(email))["held"] == HOLD
        await env.store.renew(now_ms() - 1, [req.call_id], [])   # its process stopped renewing
        assert await env.store.sweep(now_ms()) == 1
        assert (await env.admin.wallet(email))["held"] == 0


async def test_the_sweeper_charges_recorded_progress_and_the_call_own_settle_corrects_it(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000)
        up, down, dead = (hold_request(auth) for _ in range(3))
        for req in (up, down, dead):
            await env.store.reserve(req)
            progress = orjson.dumps(dict(usage_row(req, completion=2), end_state=SWEPT, status=502)).decode()
            await env.store.renew(now_ms() - 1, [], [(req.call_id, 4_000, progress)])
        assert await env.store.sweep(now_ms()) == 3
        rows = {r["call_id"]: r for r in await env.admin.usage(email, 10)}
        assert {(r["cost"], r["end_state"], r["status"], r["completion_tokens"]) for r in rows.values()} == \
            {(4_000, SWEPT, 502, 2)}
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"]) == (1_000_000 - 12_000, 0)
        assert await env.admin.verify() == []

        # the calls' own settlements arrive (retried, or replayed from a journal): each ends charged
        # by its own end state, once
        assert (await env.store.settle(done(up, 6_000))).charged == 6_000
        assert (await env.store.settle(done(down, 3_000, end_state="upstream_cut"))).charged == 3_000
        assert (await env.store.settle(done(up, 6_000))).charged == 6_000          # a replay: no-op
        rows = {r["call_id"]: r for r in await env.admin.usage(email, 10)}
        assert (rows[up.call_id]["cost"], rows[up.call_id]["end_state"]) == (6_000, "completed")
        assert (rows[down.call_id]["cost"], rows[down.call_id]["end_state"]) == (3_000, "upstream_cut")
        assert (rows[dead.call_id]["cost"], rows[dead.call_id]["end_state"]) == (4_000, SWEPT)
        w = await env.admin.wallet(email)
        assert (w["balance"], w["held"], w["total_spent"]) == (1_000_000 - 13_000, 0, 13_000)
        assert (await key_row(env, email, created["id"]))["spent"] == 13_000
        assert sorted(await ledger(env, email)) == sorted([
            ("charge", -4_000, up.call_id), ("charge", -4_000, down.call_id), ("charge", -4_000, dead.call_id),
            ("correction", -2_000, up.call_id), ("correction", 1_000, down.call_id)])
        assert await env.admin.verify() == []


async def test_a_correction_after_the_sweeper_stays_within_the_key_limit(migrated_db_url):
    async with opened(migrated_db_url) as env:
        email, created, auth = await new_key(env, 1_000_000, limit=LIMIT)
        req = hold_request(auth, plan=planner(60))
        await env.store.reserve(req)
        progress = orjson.dumps(dict(usage_row(req), end_state=SWEPT)).decode()
        await env.store.renew(now_ms() - 1, [], [(req.call_id, 10_000, progress)])
        assert await env.store.sweep(now_ms()) == 1
        other = hold_request(auth, plan=planner(85))       # 85,000 of the 90,000 left
        await env.store.reserve(other)
        assert (await env.store.settle(done(req, 60_000))).charged == 15_000   # 10,000 + the 5,000 left
        await env.store.settle(done(other, 85_000))
        assert (await key_row(env, email, created["id"]))["spent"] == LIMIT
        assert await env.admin.verify() == []
