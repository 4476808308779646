"""Billing history, usage, the request log and the admin pages in a real browser (Debian's
chromium through Playwright) against a real gateway on a socket: calls made with the official
openai SDK show in the request log and the billing history, the balance is right to the
paisa and the CSV's totals match the ledger; an admin's grant lands in the user's history and
in the audit log; disabling stops the user's key within a second; another account's ids give
404. The screenshots docs/dashboard.md shows go to docs/img/ when
AICREDITS_TEST_SCREENSHOTS=docs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import re
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import openai
import pytest
from playwright.sync_api import expect

from aicredits.domain.money import inr_to_micros
from tests.web.conftest import PASSWORD
from tests.web.test_browser import create_key, sign_in, sign_up, unique_email

pytestmark = pytest.mark.timeout(240)
WIDE = {"width": 1280, "height": 900}
DAY_MS = 86_400_000


def inr_exact(v: Decimal) -> str:
    """₹ with Indian grouping and 2 to 6 decimals, as the pages show exact amounts."""
    sign = "-" if v < 0 else ""
    whole, frac = f"{abs(v):.6f}".split(".")
    frac = frac.rstrip("0").ljust(2, "0")
    head, tail = whole[:-3], whole[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    grouped = ",".join(([head] if head else []) + groups + [tail])
    return f"{sign}₹{grouped}.{frac}"


def chat(client: openai.OpenAI, text: str) -> dict:
    raw = client.chat.completions.with_raw_response.create(model="demo/echo",
                                                           messages=[{"role": "user", "content": text}])
    raw.parse()
    return {"cost": Decimal(raw.headers["x-aicredits-cost"]), "balance": Decimal(raw.headers["x-aicredits-balance"]),
            "request_id": raw.headers["x-request-id"]}


def in_thread(coro):
    """Run a coroutine to completion beside Playwright's own event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def add_history(db_url: str, email: str, days: int) -> tuple[int, int]:
    """A month of past calls for the account (the gateway would have written them as it
    served them): returns (calls, micro-INR charged)."""
    from sqlalchemy import select

    from aicredits.store.db import make_engine
    from aicredits.store.tables import accounts
    from tests.services.history_data import add
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            account_id = (await conn.execute(select(accounts.c.id).where(accounts.c.email == email))).scalar_one()
        now = int(time.time() * 1000)
        start = now - days * DAY_MS
        events = [("grant", start - DAY_MS, 2_000_000_000)]
        models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4.6", "google/gemini-2.5-flash", "sarvam/bulbul-v2"]
        n = charged = 0
        for d in range(days):
            for i in range(3 + (d * 7) % 11):
                model = models[(d + i) % len(models)]
                cost = 20_000 + ((d * 31 + i * 17) % 90) * 1_000 * (3 if "claude" in model else 1)
                status = 502 if (d + i) % 29 == 0 else 200
                events.append(("call", start + d * DAY_MS + i * 600_000, cost if status == 200 else 0,
                               {"model": model, "status": status, "prompt": 200 + i * 40, "completion": 90 + d * 3,
                                "cache": "hit" if i % 5 == 4 else "miss"}))
                n += 1
                charged += cost if status == 200 else 0
        await add(engine, account_id, events)
        return n, charged
    finally:
        await engine.dispose()


def test_calls_show_in_the_request_log_and_billing_and_the_csv_sums_to_the_ledger(page, dashboard, shot, tmp_path):
    email = unique_email("billing")
    sign_up(page, email)
    dashboard.admin(lambda a: a.grant(email, inr_to_micros("100"), note="opening grant"))
    secret = create_key(page, "laptop")
    client = openai.OpenAI(base_url=dashboard.v1, api_key=secret, max_retries=0)
    first = chat(client, "namaste")
    second = chat(client, "please echo these few words back")
    balance = Decimal(100) - first["cost"] - second["cost"]
    assert second["balance"] == balance

    page.set_viewport_size(WIDE)
    page.goto("/dashboard/usage/requests")
    rows = page.locator("table.requests tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.get_by_role("cell", name="demo/echo")).to_be_visible()
    expect(rows.first.get_by_role("cell", name=inr_exact(second["cost"]), exact=True)).to_be_visible()
    shot(page, "requests")
    rows.first.get_by_role("link", name=re.compile(r"entry #\d+")).click()
    expect(page.get_by_role("heading", name=re.compile(r"Ledger entry #\d+"))).to_be_visible()
    expect(page.get_by_text(second["request_id"])).to_be_visible()
    expect(page.get_by_text(inr_exact(balance), exact=True)).to_be_visible()      # to the micro-rupee
    shot(page, "billing-entry")

    page.goto("/dashboard/billing")
    expect(page.get_by_role("link", name="2 calls that day")).to_be_visible()
    expect(page.get_by_text("opening grant")).to_be_visible()
    paisa = f"₹{balance.quantize(Decimal('0.01'))}"
    expect(page.locator(".tile .big").first).to_have_text(paisa)                  # to the paisa
    shot(page, "billing")
    page.get_by_role("link", name="2 calls that day").click()
    expect(page.locator("table.ledger tbody tr")).to_have_count(2)
    expect(page.get_by_role("cell", name=inr_exact(-first["cost"]), exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name=inr_exact(balance), exact=True)).to_be_visible()

    page.goto("/dashboard/billing?view=entries")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "ledger.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["kind"] for r in rows] == ["grant", "charge", "charge"]
    assert sum(Decimal(r["amount_inr"]) for r in rows) == balance == Decimal(rows[-1]["balance_after_inr"])
    assert sum(Decimal(r["amount_inr"]) for r in rows if r["kind"] == "charge") == -(first["cost"] + second["cost"])
    assert dashboard.credits(secret)["balance"] == float(balance)


def test_usage_charts_for_a_month(page, dashboard, shot):
    email = unique_email("usage")
    sign_up(page, email)
    calls, charged = in_thread(add_history(dashboard.db_url, email, 30))
    page.set_viewport_size(WIDE)
    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    page.goto(f"/dashboard/usage?from={today - timedelta(days=31)}&to={today}")
    expect(page.locator("#total-requests")).to_have_text(str(calls))
    expect(page.locator("#total-spend")).to_have_text(f"₹{Decimal(charged).scaleb(-6).quantize(Decimal('0.01'))}")
    expect(page.locator("svg.chart")).to_have_count(4)
    assert page.locator("svg.chart rect").count() > 60
    expect(page.get_by_role("link", name="anthropic/claude-sonnet-4.6")).to_be_visible()
    shot(page, "usage")
    page.goto("/dashboard/billing")
    shot(page, "billing-days")


def test_an_admin_grant_its_audit_row_and_disabling_a_user(page, browser, dashboard, shot):
    admin_email = unique_email("admin")
    dashboard.admin(lambda a: a.create_user(admin_email, password=PASSWORD, role="admin"))
    user_email = unique_email("member")
    member = browser.new_context(base_url=dashboard.base_url)
    member_page = member.new_page()
    sign_up(member_page, user_email)
    secret = create_key(member_page, "phone")

    page.set_viewport_size(WIDE)
    sign_in(page, admin_email)
    expect(page.get_by_role("link", name="Admin")).to_be_visible()
    page.get_by_role("link", name="Admin").click()
    page.get_by_label("Search by email or name").fill(user_email.split("@")[0])
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=user_email)).to_be_visible()
    shot(page, "admin-users")
    page.get_by_role("link", name=user_email).click()
    page.get_by_label("Amount, ₹").fill("500")
    page.get_by_label("Reason").fill("Diwali bonus")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("Granted INR 500.00; the balance is now INR 500.00.")).to_be_visible()
    expect(page.locator("#user-balance")).to_have_text("₹500.00")
    shot(page, "admin-user")

    page.get_by_role("link", name="Audit log").click()
    row = page.locator("table.audit tbody tr").filter(has_text="credits.granted").first
    expect(row).to_contain_text(admin_email)
    expect(row).to_contain_text(user_email)
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text("Diwali bonus")
    shot(page, "admin-audit")

    member_page.goto("/dashboard/billing?view=entries")
    expect(member_page.get_by_role("link", name="Diwali bonus")).to_be_visible()
    client = openai.OpenAI(base_url=dashboard.v1, api_key=secret, max_retries=0)
    chat(client, "hello")

    page.get_by_role("link", name="Models").click()
    expect(page.get_by_text("demo/echo")).to_be_visible()
    shot(page, "admin-models")
    page.get_by_role("link", name="Providers").click()
    expect(page.locator("strong", has_text="demo")).to_be_visible()
    shot(page, "admin-providers")
    page.get_by_role("link", name="Admin API keys").click()
    page.get_by_label("Name").fill("provisioning script")
    page.get_by_role("button", name="Create admin key").click()
    assert re.fullmatch(r"sk-admin-[0-9a-f]{64}", page.get_by_label("Your new admin key").input_value())
    shot(page, "admin-keys")

    page.get_by_role("link", name="Users").click()
    page.get_by_label("Search by email or name").fill(user_email)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=user_email).click()
    page.get_by_role("button", name="Disable account").click()
    expect(page.get_by_text("Account disabled")).to_be_visible()
    disabled_at = time.monotonic()
    with pytest.raises(openai.AuthenticationError):
        chat(client, "still there?")
    assert time.monotonic() - disabled_at < 1.0
    member_page.goto("/dashboard/billing")
    expect(member_page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(member_page, user_email)
    expect(member_page.get_by_text("This account is disabled")).to_be_visible()
    member.close()


def test_another_accounts_ids_give_404(page, browser, dashboard):
    owner = browser.new_context(base_url=dashboard.base_url)
    owner_page = owner.new_page()
    owner_email = unique_email("owner")
    sign_up(owner_page, owner_email)
    dashboard.admin(lambda a: a.grant(owner_email, inr_to_micros("10"), note="admin grant"))
    secret = create_key(owner_page, "owner key")
    chat(openai.OpenAI(base_url=dashboard.v1, api_key=secret, max_retries=0), "mine")
    owner_page.goto("/dashboard/usage/requests")
    entry = owner_page.get_by_role("link", name=re.compile(r"entry #\d+")).first.get_attribute("href")
    key_id = owner_page.locator("#key option", has_text="owner key").get_attribute("value")
    owner.close()

    sign_up(page, unique_email("intruder"))
    for path in (entry, f"/dashboard/usage/requests?key={key_id}", "/dashboard/admin/users",
                 f"/dashboard/billing/entries/{uuid.uuid4().int % 10**6}"):
        response = page.goto(path)
        assert response.status == 404, path
        assert "owner key" not in page.content() and owner_email not in page.content()
    page.goto("/dashboard/billing?view=entries&before=99999999999999." + entry.rsplit("/", 1)[1])
    expect(page.get_by_text("No ledger entries match.")).to_be_visible()
