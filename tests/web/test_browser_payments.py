"""Top-ups in a real browser (Debian's chromium through Playwright) against a real gateway on a socket:
500 INR through the test provider, then a call with the official openai SDK, and the balance right
to the paisa; the same through the fake Razorpay (its checkout.js served from the fake, its signed
webhooks delivered to the gateway); a failed Razorpay payment. The screenshots docs/dashboard.md shows
go to docs/img/ when
AICREDITS_TEST_SCREENSHOTS=docs."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid

import openai
import pytest
from playwright.sync_api import expect

from aicredits.web.formatting import inr
from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario
from tests.fakes.razorpay_upstream import FakeRazorpay
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.timeout(180)
INR = 1_000_000


@pytest.fixture(scope="module")
def razorpay():
    fake = FakeRazorpay().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def shop(serve_gateway, razorpay):
    """A gateway with both payment providers, Razorpay being the fake; its webhooks come back here."""
    gw = serve_gateway(env={
        "AICREDITS_PAYMENT_PROVIDERS": "test,razorpay", "AICREDITS_RAZORPAY_KEY_ID": razorpay.key_id,
        "AICREDITS_RAZORPAY_KEY_SECRET": razorpay.key_secret,
        "AICREDITS_RAZORPAY_WEBHOOK_SECRET": razorpay.webhook_secret,
        "AICREDITS_RAZORPAY_BASE_URL": razorpay.base_url, "AICREDITS_RAZORPAY_CHECKOUT_URL": razorpay.checkout_url,
        "AICREDITS_BUSINESS_NAME": "Acme AI Pvt Ltd"})
    return gw


@pytest.fixture
def rzp(razorpay, shop):
    razorpay.reset()
    razorpay.webhook_url = shop.base_url + "/webhooks/razorpay"
    return razorpay


@pytest.fixture
def shop_page(browser, shop):
    context = browser.new_context(base_url=shop.base_url, viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = errors
    yield pg
    context.close()


def sign_up(page, email: str) -> None:
    page.goto("/dashboard/signup")
    page.get_by_label("Name").fill("Meera Iyer")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def create_key(page) -> str:
    page.goto("/dashboard/keys")
    page.get_by_label("Name").fill("script")
    page.get_by_role("button", name="Create key").click()
    return page.get_by_label("Your new key").input_value()


def ledger(gw, email: str) -> list[tuple[str, int, int]]:
    path = gw.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute("SELECT kind, amount, balance_after FROM ledger_entries e JOIN accounts a "
                          "ON a.id = e.account_id WHERE a.email = ? ORDER BY e.id", (email,)).fetchall()


def call_and_check_balance(page, gw, upstream, secret: str, topped_up: int) -> None:
    """One chat call with the official openai SDK; the wallet then shows the top-up minus its exact price."""
    upstream.enqueue(Scenario(content="नमस्ते", prompt_tokens=1234, completion_tokens=567))
    client = openai.OpenAI(base_url=gw.v1, api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "नमस्ते"
    charge = expected_micros(gw.catalog()["openai/gpt-4o-mini"], 1234, 567)
    assert 0 < charge < topped_up
    credits = gw.credits(secret)
    assert round(credits["balance"] * INR) == topped_up - charge          # to the micro-rupee
    assert round(credits["total_added"] * INR) == topped_up
    page.goto("/dashboard/wallet")
    expect(page.locator("#balance")).to_have_text(inr(topped_up - charge))  # to the paisa
    expect(page.locator("#spent-month")).to_have_text(inr(charge))


def test_top_up_500_with_the_test_provider_then_call(shop_page, shop, upstream, shot):
    page, email = shop_page, f"meera-{uuid.uuid4().hex[:8]}@example.in"
    sign_up(page, email)
    page.get_by_role("link", name="Wallet").click()
    expect(page.get_by_role("heading", name="Wallet")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("₹0.00")
    shot(page, "wallet")
    page.get_by_label("Test checkout (no money moves)").check()
    page.get_by_label("₹500.00").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Pay for your top-up")).to_be_visible()
    expect(page.locator("#you-pay")).to_have_text("₹500.00")
    page.get_by_role("button", name="Pay ₹500.00").click()
    expect(page.get_by_text("₹500.00 added to your wallet.")).to_be_visible()
    expect(page.locator("#wallet-received")).to_have_text("₹500.00")
    expect(page.get_by_text("Acme AI Pvt Ltd")).to_be_visible()
    shot(page, "receipt")
    page.emulate_media(media="print")          # on paper: the receipt alone, still a table
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    expect(page.get_by_role("button", name="Print or save as PDF")).to_be_hidden()
    expect(page.locator("#total-paid")).to_have_text("₹500.00")
    page.emulate_media(media="screen")
    assert ledger(shop, email) == [("topup", 500 * INR, 500 * INR)]
    call_and_check_balance(page, shop, upstream, create_key(page), 500 * INR)
    assert page.console_errors == []


def test_top_up_through_razorpay_checkout_with_signed_webhooks(shop_page, shop, rzp, upstream, shot):
    page, email = shop_page, f"arjun-{uuid.uuid4().hex[:8]}@example.in"
    sign_up(page, email)
    page.goto("/dashboard/wallet")
    page.get_by_label("Razorpay (UPI, cards, netbanking)").check()
    page.get_by_label("Or another amount").fill("750.50")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#you-pay")).to_have_text("₹750.50")
    shot(page, "topup-pay")
    page.get_by_role("button", name="Pay ₹750.50").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("pay INR 750.50")
    dialog.get_by_role("button", name="Pay").click()
    expect(page.get_by_text("₹750.50 added to your wallet.")).to_be_visible()
    (order_id,) = rzp.orders
    (pay_id,) = rzp.payments
    expect(page.get_by_text(pay_id)).to_be_visible()

    # Razorpay's signed webhooks reached the gateway too; whichever came first credited, once
    deadline = time.time() + 10
    while len(rzp.deliveries) < 3 and time.time() < deadline:
        time.sleep(0.05)
    by_event = {d.event.name: (d.status, d.answer) for d in rzp.deliveries}
    assert set(by_event) == {"payment.authorized", "payment.captured", "order.paid"}
    assert all(status == 200 for status, _ in by_event.values())
    answers = [re.search(r'"status":"(\w+)"', a).group(1) for _, a in by_event.values()]
    assert set(answers) <= {"credited", "already_credited"}
    assert ledger(shop, email) == [("topup", 75_050 * 10_000, 75_050 * 10_000)]
    assert rzp.orders[order_id]["status"] == "paid"
    call_and_check_balance(page, shop, upstream, create_key(page), 75_050 * 10_000)
    assert shop.verify() == []
    assert page.console_errors == []


def test_a_failed_razorpay_payment_credits_nothing(shop_page, shop, rzp):
    page, email = shop_page, f"ravi-{uuid.uuid4().hex[:8]}@example.in"
    sign_up(page, email)
    page.goto("/dashboard/wallet")
    page.get_by_label("Razorpay (UPI, cards, netbanking)").check()
    page.get_by_label("₹1,000.00").check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Pay ₹1,000.00").click()
    page.get_by_role("dialog").get_by_role("button", name="Fail").click()
    expect(page.locator("#checkout-status")).to_contain_text("The payment failed: Payment failed because the card")
    deadline = time.time() + 10
    while not rzp.deliveries and time.time() < deadline:
        time.sleep(0.05)
    assert [(d.event.name, d.status) for d in rzp.deliveries] == [("payment.failed", 200)]
    page.goto("/dashboard/wallet")
    expect(page.locator("#balance")).to_have_text("₹0.00")
    expect(page.get_by_role("cell", name="failed")).to_be_visible()
    assert ledger(shop, email) == []
