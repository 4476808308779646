"""Quota slices across processes: `serve --workers 2` with AICREDITS_QUOTA_SLICES=on, on PostgreSQL
and on SQLite, drives a wallet to empty with 64 concurrent calls at a time. Each worker takes slices
of the one wallet; no call may spend it below zero, every charge is exact, the per-call holds of
the small-wallet fallback take over as it runs low, and once the workers are idle every slice is
back in the wallet and `ledger verify` holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import httpx
import pytest

from aicredits.catalog import load_catalog
from aicredits.domain.money import ceil_fraction, format_inr, to_fraction
from aicredits.domain.pricing import Rates, token_prices
from aicredits.domain.reservation import prompt_token_bound
from tests.conftest import HTTP, MARKUP, USD_INR, expected_micros, stop_all
from tests.fakes.openai_upstream import Scenario

MODEL = "openai/gpt-4o-mini"
MAX_TOKENS = 20
BODY = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "Say hi."}]}
WAVE = 64
WAVES = 8
SLICES = {"AICREDITS_QUOTA_SLICES": "on", "AICREDITS_HOLD_LEASE_SECONDS": "3", "AICREDITS_QUOTA_SLICE_CALLS": "8",
          "AICREDITS_QUOTA_MIN_CALLS": "4"}


def micros(inr) -> int:
    return int(Decimal(str(inr)) * 1_000_000)


def computed_hold() -> int:
    spec = load_catalog().get(MODEL)
    prices = token_prices(spec, Rates(to_fraction(USD_INR), to_fraction(MARKUP)))
    return ceil_fraction(prompt_token_bound(BODY, spec.context_window) * prices.max_input + prices.output * MAX_TOKENS)


async def drain_wallet(gw, upstream) -> None:
    per_call = expected_micros(gw.catalog()[MODEL], 19, 9)
    hold = computed_hold()
    # affords about 300 charges, and 10 holds at a time: holds and slices run it low long before
    # the charges empty it, then the charges do
    budget = 300 * per_call
    assert budget > 10 * hold
    key = await asyncio.to_thread(gw.create_key, credits=format_inr(budget),
                                  email=f"slices-{uuid.uuid4().hex[:8]}@example.com")
    headers = {"Authorization": f"Bearer {key['key']}"}
    upstream.enqueue(*[Scenario(prompt_tokens=19, completion_tokens=9, first_byte_delay=0.02)
                       for _ in range(WAVE * WAVES)])
    limits = httpx.Limits(max_connections=WAVE + 10, max_keepalive_connections=WAVE + 10)
    samples: list[dict] = []
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        running = True

        async def sample() -> None:
            while running:
                r = await client.get(gw.v1 + "/credits", headers=headers)
                assert r.status_code == 200
                samples.append(r.json())
                await asyncio.sleep(0.01)

        async def one() -> httpx.Response:
            return await client.post(gw.v1 + "/chat/completions", json=BODY, headers=headers)

        sampler = asyncio.create_task(sample())
        responses: list[httpx.Response] = []
        try:
            for _ in range(WAVES):
                responses += await asyncio.gather(*(one() for _ in range(WAVE)))
        finally:
            running = False
            await sampler
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 402]
        assert len(ok) + len(refused) == len(responses), {r.status_code for r in responses}
        assert refused and len(ok) > 50
        costs = [micros(r.headers["x-aicredits-cost"]) for r in ok]
        assert set(costs) == {per_call}
        assert all(micros(r.headers["x-aicredits-balance"]) >= 0 for r in ok)
        for s in samples:
            assert micros(s["balance"]) >= 0 and micros(s["held"]) >= 0, s
            assert micros(s["balance"]) + micros(s["held"]) <= budget, s

        # idle: every charge settled in its batch, every slice given back (lease / 6 = 0.5 s idle)
        deadline = time.monotonic() + 20
        while True:
            end = (await client.get(gw.v1 + "/credits", headers=headers)).json()
            if (end["held"] == 0 and micros(end["total_spent"]) == len(ok) * per_call) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert end["held"] == 0 and end["key"]["held"] == 0, end
    total = micros(end["total_spent"])
    assert total == sum(costs) == len(ok) * per_call
    assert micros(end["key"]["spent"]) == total
    assert micros(end["balance"]) == budget - total >= 0
    assert budget - total < 10 * hold            # the wallet was spent down to the last holds
    assert await asyncio.to_thread(gw.verify) == []
    assert (gw.workdir / "grant-journal").is_dir()   # the calls were authorized against slices
    assert "Traceback" not in gw.log()


@pytest.fixture(scope="module")
def gateways(make_module_pg_db, start_gateway):
    """The two tests' `serve --workers 2`, started in parallel before the first (each test stops its own)."""
    pg, sqlite = start_gateway.many({"db_url": make_module_pg_db(), "workers": 2, "env": SLICES},
                                    {"workers": 2, "env": SLICES})
    yield {"postgresql": pg, "sqlite": sqlite}
    stop_all([pg, sqlite])


@pytest.mark.timeout(180)
def test_two_workers_with_slices_on_postgresql_never_overspend(gateways, upstream):
    gw = gateways["postgresql"]
    try:
        asyncio.run(drain_wallet(gw, upstream))
    finally:
        gw.stop()


@pytest.mark.timeout(180)
def test_two_workers_with_slices_on_sqlite_never_overspend(gateways, upstream):
    gw = gateways["sqlite"]
    try:
        asyncio.run(drain_wallet(gw, upstream))
    finally:
        gw.stop()


@pytest.mark.timeout(120)
def test_with_slices_a_keys_rate_limit_and_spending_limit_still_hold(serve_gateway, upstream):
    """One worker (served from a thread of this process) is enough: the limits are the key's."""
    gw = serve_gateway(env=SLICES)
    try:
        per_call = expected_micros(gw.catalog()[MODEL], 19, 9)
        hold = computed_hold()
        # rpm 5: the sixth call in the window is 429, whatever the slice holds
        rated = gw.create_key(credits="100", rpm=5)
        upstream.enqueue(*[Scenario() for _ in range(8)])
        statuses = [HTTP.post(gw.v1 + "/chat/completions", json=BODY, timeout=30,
                               headers={"Authorization": f"Bearer {rated['key']}"}).status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        # a key limit of 40 holds in a wallet of 100 INR: its slices never take it past the limit,
        # and the last calls are refused with the key's 402
        limited = gw.create_key(credits="100", limit=format_inr(40 * hold))
        headers = {"Authorization": f"Bearer {limited['key']}"}
        upstream.enqueue(*[Scenario() for _ in range(400)])
        ok = 0
        for _ in range(400):
            r = HTTP.post(gw.v1 + "/chat/completions", json=dict(BODY, max_tokens=MAX_TOKENS), headers=headers,
                           timeout=30)
            if r.status_code == 402:
                assert "the key's credit limit" in r.json()["error"]["message"]
                break
            assert r.status_code == 200, r.text
            ok += 1
        else:
            pytest.fail("the key's limit never refused a call")
        deadline = time.monotonic() + 20
        while (end := gw.credits(limited["key"]))["held"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert end["held"] == 0 and end["key"]["held"] == 0
        assert micros(end["key"]["spent"]) == ok * per_call <= 40 * hold
        assert 40 * hold - ok * per_call < hold          # spent down to the last hold
        assert gw.verify() == []
    finally:
        gw.stop()
