"""Billing history, usage and the request log, in-process (httpx.ASGITransport against the
gateway): a call made with a key shows in the request log, linked to its charge; the billing
history (by day and entry by entry) shows every entry with its balance; the CSV sums to the
ledger; another account's ids and keys give 404; bad parameters give 400, never a 500."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest

from tests.web.conftest import client_for, signed_up

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET_RE = re.compile(r'id="new-secret" type="text" readonly value="(sk-[0-9a-f]{64})"')


async def make_key(client, csrf: str, name: str = "laptop") -> str:
    r = await client.post("/dashboard/keys", data={"csrf_token": csrf, "name": name, "limit": "", "rpm": "", "tpm": ""})
    assert r.status_code == 201, r.text
    return SECRET_RE.search(r.text).group(1)


async def grant(gw, email: str, inr: str) -> None:
    from aicredits.domain.money import inr_to_micros
    from aicredits.services.admin import Admin
    await Admin(gw.services.engine).grant(email, inr_to_micros(inr), note="welcome")


async def call(client, secret: str, text: str = "namaste") -> dict:
    r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "demo/echo", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return {"cost": r.headers["x-aicredits-cost"], "balance": r.headers["x-aicredits-balance"],
            "request_id": r.headers["x-request-id"]}


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_a_call_shows_in_the_request_log_billing_history_and_csv(web_client):
    gw = web_client.gateway
    csrf = await signed_up(web_client, "meera@example.in")
    await grant(gw, "meera@example.in", "25")
    secret = await make_key(web_client, csrf)
    first = await call(web_client, secret, "one")
    second = await call(web_client, secret, "two two two")

    log = await web_client.get("/dashboard/usage/requests")
    assert log.status_code == 200
    assert log.text.count("demo/echo") >= 2
    entries = re.findall(r'href="/dashboard/billing/entries/(\d+)">entry #\1', log.text)
    assert len(entries) == 2
    entry = await web_client.get(f"/dashboard/billing/entries/{entries[0]}")
    assert entry.status_code == 200 and second["request_id"] in entry.text
    assert f"₹{Decimal(second['balance']):,.6f}".rstrip("0") in entry.text.replace(",", ",")

    days = await web_client.get("/dashboard/billing")
    assert days.status_code == 200
    assert "2 calls that day" in days.text
    assert "welcome" in days.text
    flat = await web_client.get("/dashboard/billing?view=entries")
    assert flat.status_code == 200 and flat.text.count('class="num">-₹') == 2

    export = await web_client.get("/dashboard/billing.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = csv_rows(export.text)
    assert [r["kind"] for r in rows] == ["grant", "charge", "charge"]
    total = sum(Decimal(r["amount_inr"]) for r in rows)
    assert total == Decimal(second["balance"]) == Decimal(rows[-1]["balance_after_inr"])
    assert -Decimal(rows[1]["amount_inr"]) == Decimal(first["cost"])
    # the charges-only export sums to the charges
    charges = csv_rows((await web_client.get("/dashboard/billing.csv?kind=charge")).text)
    assert sum(Decimal(r["amount_inr"]) for r in charges) == -(Decimal(first["cost"]) + Decimal(second["cost"]))

    usage = await web_client.get("/dashboard/usage")
    assert usage.status_code == 200
    assert '<svg class="chart"' in usage.text and "demo/echo" in usage.text
    assert re.search(r'id="total-requests">2<', usage.text)


async def test_another_accounts_entry_and_key_give_404(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as owner, client_for(gw, "198.51.100.9") as intruder:
        csrf = await signed_up(owner, "owner@example.in")
        await grant(gw, "owner@example.in", "5")
        secret = await make_key(owner, csrf, "owner key")
        await call(owner, secret)
        log = await owner.get("/dashboard/usage/requests")
        entry_id = re.search(r'/dashboard/billing/entries/(\d+)', log.text).group(1)
        key_id = re.search(r'<option value="([0-9a-zA-Z_-]+)">owner key', log.text).group(1)

        await signed_up(intruder, "intruder@example.in")
        for path in (f"/dashboard/billing/entries/{entry_id}", f"/dashboard/usage/requests?key={key_id}",
                     "/dashboard/billing/entries/99999999999999999999"):
            r = await intruder.get(path)
            assert r.status_code == 404, path
            assert "owner key" not in r.text and "demo/echo" not in r.text
        # the owner's cursor replayed by the intruder pages the intruder's (empty) history only
        r = await intruder.get(f"/dashboard/billing?view=entries&before=99999999999999.{entry_id}")
        assert r.status_code == 200 and "No ledger entries match" in r.text


BAD = ["?from=yesterday", "?from=2026-12-05&to=2026-12-01", "?kind=bonus", "?view=pie", "?view=entries&before=abc",
       "?view=entries&after=1.99999999999", "?day=5-12-2026", "?to=" + "9" * 300]


async def test_bad_parameters_are_400_with_a_message(web_client):
    await signed_up(web_client, "params@example.in")
    for query in BAD:
        r = await web_client.get("/dashboard/billing" + query)
        assert r.status_code == 400, (query, r.text)
        assert 'role="alert"' in r.text
        if "before" not in query and "after" not in query and "day" not in query:   # the CSV has no pages
            assert (await web_client.get("/dashboard/billing.csv" + query)).status_code == 400, query
    for query in ["?status=bad", "?cache=cold", "?from=2026-13-01", "?before=1.2.3"]:
        r = await web_client.get("/dashboard/usage/requests" + query)
        assert r.status_code == 400 and 'role="alert"' in r.text, query
    for query in ["?from=2020-01-01&to=2026-01-01", "?from=x"]:
        r = await web_client.get("/dashboard/usage" + query)
        assert r.status_code == 400 and 'role="alert"' in r.text, query
