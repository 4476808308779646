"""The wallet pages in-process (httpx's ASGI transport on the gateway app, real SQLite): top-ups
through the test provider and through the fake Razorpay's signed callback, fee/GST shown before
paying and on the receipt, refusals, CSRF, other accounts' top-ups, and the admin's payments page."""

from __future__ import annotations

import re
import uuid

import pytest

from aicredits.services.admin import Admin
from aicredits.store.db import make_engine
from tests.fakes.razorpay_upstream import FakeRazorpay
from tests.services.test_payments import spend
from tests.web.conftest import PASSWORD, client_for, csrf_of, signed_up

INR = 1_000_000
TOPUP_PATH = re.compile(r"/dashboard/wallet/topups/(tu_[0-9a-f]+)$")


@pytest.fixture(scope="module")
def fake():
    f = FakeRazorpay().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    fake.auto_deliver = False
    yield fake


def payments_env(fake: FakeRazorpay, **extra) -> dict:
    return {"AICREDITS_PAYMENT_PROVIDERS": "razorpay,test", "AICREDITS_RAZORPAY_KEY_ID": fake.key_id,
            "AICREDITS_RAZORPAY_KEY_SECRET": fake.key_secret,
            "AICREDITS_RAZORPAY_WEBHOOK_SECRET": fake.webhook_secret, "AICREDITS_RAZORPAY_BASE_URL": fake.base_url,
            "AICREDITS_RAZORPAY_CHECKOUT_URL": fake.checkout_url, **extra}


def email() -> str:
    return f"w-{uuid.uuid4().hex[:8]}@example.in"


async def start_topup(client, csrf: str, provider: str, amount: str, custom: str = "") -> str:
    r = await client.post("/dashboard/wallet/topup", data={"csrf_token": csrf, "provider": provider,
                                                           "amount": amount, "custom": custom})
    assert r.status_code == 303, r.text
    m = TOPUP_PATH.search(r.headers["location"])
    assert m, r.headers["location"]
    return m.group(1)


async def test_top_up_through_the_test_provider(web_gateway):
    gw = await web_gateway({"AICREDITS_PAYMENT_PROVIDERS": "test"})
    async with client_for(gw) as client:
        csrf = await signed_up(client, email())
        page = await client.get("/dashboard/wallet")
        assert page.status_code == 200
        for text in ("Balance", "Held", "Spent this month", "₹500.00", "₹5,000.00", "Or another amount"):
            assert text in page.text
        topup_id = await start_topup(client, csrf, "test", "500.00")
        pay = await client.get(f"/dashboard/wallet/topups/{topup_id}")
        assert "You pay" in pay.text and "₹500.00" in pay.text and "no money moves" in pay.text
        clicks = [await client.post(f"/dashboard/wallet/test-checkout/{topup_id}",
                                    data={"csrf_token": csrf, "outcome": "pay"}) for _ in range(2)]
        assert all(c.status_code == 303 and c.headers["location"].endswith("/receipt") for c in clicks)
        receipt = await client.get(clicks[0].headers["location"])
        assert "₹500.00 added to your wallet." in receipt.text
        assert re.search(r'id="wallet-received">₹500.00<', receipt.text)
        assert re.search(r'id="total-paid">₹500.00<', receipt.text)
        wallet = await client.get("/dashboard/wallet")
        assert re.search(r'id="balance">₹500.00<', wallet.text)
        assert "Receipt" in wallet.text


async def test_a_failed_test_payment_adds_nothing(web_gateway):
    gw = await web_gateway({"AICREDITS_PAYMENT_PROVIDERS": "test"})
    async with client_for(gw) as client:
        csrf = await signed_up(client, email())
        topup_id = await start_topup(client, csrf, "", "custom", custom="₹1,234.56")
        r = await client.post(f"/dashboard/wallet/test-checkout/{topup_id}", data={"csrf_token": csrf,
                                                                                  "outcome": "fail"})
        assert r.status_code == 303 and r.headers["location"].endswith(topup_id)
        page = await client.get(r.headers["location"])
        assert "The test payment failed; nothing was added." in page.text
        assert "declined on the test checkout page" in page.text
        assert "₹1,234.56" in page.text
        assert re.search(r'id="balance">₹0.00<', (await client.get("/dashboard/wallet")).text)


async def test_fee_and_gst_are_shown_before_paying_and_on_the_receipt(web_gateway):
    gw = await web_gateway({"AICREDITS_PAYMENT_PROVIDERS": "test", "AICREDITS_TOPUP_FEE_PERCENT": "2",
                            "AICREDITS_TOPUP_GST_PERCENT": "18", "AICREDITS_BUSINESS_NAME": "Acme AI Pvt Ltd",
                            "AICREDITS_GSTIN": "29ABCDE1234F1Z5"})
    async with client_for(gw) as client:
        csrf = await signed_up(client, email())
        wallet = await client.get("/dashboard/wallet")
        assert "A fee of 2% and GST of 18% are added to what you pay" in wallet.text
        topup_id = await start_topup(client, csrf, "test", "500.00")
        pay = (await client.get(f"/dashboard/wallet/topups/{topup_id}")).text
        for text in ("Credits to your wallet", "₹500.00", "Fee (2%)", "₹10.00", "GST (18%)", "₹91.80"):
            assert text in pay
        assert re.search(r'id="you-pay">₹601.80<', pay)
        r = await client.post(f"/dashboard/wallet/test-checkout/{topup_id}", data={"csrf_token": csrf,
                                                                                  "outcome": "pay"})
        receipt = (await client.get(r.headers["location"])).text
        assert re.search(r'id="total-paid">₹601.80<', receipt)
        assert re.search(r'id="wallet-received">₹500.00<', receipt)
        assert "Acme AI Pvt Ltd" in receipt and "GSTIN 29ABCDE1234F1Z5" in receipt
        assert re.search(r'id="balance">₹500.00<', (await client.get("/dashboard/wallet")).text)


@pytest.mark.parametrize("custom, message", [("99", "The smallest top-up is 100.00 INR."),
                                             ("100001", "The largest top-up is 100000.00 INR."),
                                             ("5.555", "is not an amount in rupees"), ("", "is not an amount")])
async def test_amounts_outside_the_terms_are_refused_on_the_page(web_gateway, custom, message):
    gw = await web_gateway({"AICREDITS_PAYMENT_PROVIDERS": "test"})
    async with client_for(gw) as client:
        csrf = await signed_up(client, email())
        r = await client.post("/dashboard/wallet/topup", data={"csrf_token": csrf, "provider": "test",
                                                               "amount": "custom", "custom": custom})
        assert r.status_code == 400 and message in r.text
        assert "No top-ups yet." in r.text


async def test_without_providers_top_ups_are_off(web_client):
    csrf = await signed_up(web_client, email())
    page = await web_client.get("/dashboard/wallet")
    assert "Top-ups are not enabled on this server" in page.text
    r = await web_client.post("/dashboard/wallet/topup", data={"csrf_token": csrf, "provider": "test",
                                                               "amount": "500"})
    assert r.status_code == 400 and "not enabled" in r.text


async def test_csrf_and_other_accounts(web_gateway):
    gw = await web_gateway({"AICREDITS_PAYMENT_PROVIDERS": "test"})
    async with client_for(gw) as owner, client_for(gw, "203.0.113.8") as other:
        csrf = await signed_up(owner, email())
        topup_id = await start_topup(owner, csrf, "test", "500.00")
        no_token = await owner.post(f"/dashboard/wallet/test-checkout/{topup_id}", data={"outcome": "pay"})
        assert no_token.status_code == 403
        assert (await owner.post("/dashboard/wallet/topup", data={"amount": "500"})).status_code == 403
        other_csrf = await signed_up(other, email())
        for path in (f"/dashboard/wallet/topups/{topup_id}", f"/dashboard/wallet/topups/{topup_id}/receipt"):
            assert (await other.get(path)).status_code == 404
        r = await other.post(f"/dashboard/wallet/test-checkout/{topup_id}", data={"csrf_token": other_csrf,
                                                                                 "outcome": "pay"})
        assert r.status_code == 404
        assert re.search(r'id="balance">₹0.00<', (await owner.get("/dashboard/wallet")).text)
        assert (await owner.get("/dashboard/wallet/topups/tu_nope/receipt")).status_code == 404


async def test_razorpay_checkout_page_and_its_signed_callback(web_gateway, fake):
    gw = await web_gateway(payments_env(fake))
    async with client_for(gw) as client:
        csrf = await signed_up(client, email())
        topup_id = await start_topup(client, csrf, "razorpay", "500.00")
        pay = await client.get(f"/dashboard/wallet/topups/{topup_id}")
        assert f'<script src="{fake.checkout_url}" defer></script>' in pay.text
        csp = pay.headers["content-security-policy"]
        assert f"script-src 'self' {fake.base_url}" in csp and f"connect-src 'self' {fake.base_url}" in csp
        assert pay.headers.get_list("content-security-policy") == [csp]       # one policy, not two
        assert fake.key_secret not in pay.text and fake.webhook_secret not in pay.text
        (order_id,) = fake.orders
        assert f'"order_id":"{order_id}"' in pay.text.replace(" ", "")
        paid = fake.pay(order_id)
        forged = {**paid.response, "razorpay_signature": "0" * 64}
        r = await client.post("/dashboard/wallet/razorpay/callback", data={"csrf_token": csrf, "topup_id": topup_id,
                                                                           **forged})
        assert r.status_code == 400 and "signature does not verify; nothing was credited" in r.text
        r = await client.post("/dashboard/wallet/razorpay/callback", data={"csrf_token": csrf, "topup_id": topup_id,
                                                                           **paid.response})
        assert r.status_code == 303 and r.headers["location"].endswith(f"/{topup_id}/receipt")
        receipt = (await client.get(r.headers["location"])).text
        assert paid.payment["id"] in receipt and "card" in receipt
        # the webhook arrives later: nothing more
        captured = next(e for e in paid.events if e.name == "payment.captured")
        hook = await client.post("/webhooks/razorpay", content=captured.body, headers=captured.headers)
        assert hook.json() == {"status": "already_credited"}
        assert re.search(r'id="balance">₹500.00<', (await client.get("/dashboard/wallet")).text)
        # a dashboard page keeps the strict policy
        assert "script-src 'self';" in (await client.get("/dashboard/wallet")).headers["content-security-policy"]


async def test_the_admin_sees_payments_and_what_refunds_could_not_take_back(web_gateway, fake, tmp_path):
    gw = await web_gateway(payments_env(fake))
    engine = make_engine(gw.settings.database_url)
    try:
        admin_email = email()
        await Admin(engine).create_user(admin_email, password=PASSWORD, role="admin")
        async with client_for(gw) as user, client_for(gw, "203.0.113.9") as admin:
            user_email = email()
            csrf = await signed_up(user, user_email)
            topup_id = await start_topup(user, csrf, "razorpay", "500.00")
            (order_id,) = fake.orders
            paid = fake.pay(order_id)
            await user.post("/dashboard/wallet/razorpay/callback", data={"csrf_token": csrf, **paid.response})
            # the user's calls spend 300 INR of it, then it is refunded in full
            account_id = (await Admin(engine).wallet(user_email))["entries"][0]["account_id"]
            await spend(engine, account_id, 300 * INR)
            _, (_, processed) = fake.refund(paid.payment["id"])
            hook = await user.post("/webhooks/razorpay", content=processed.body, headers=processed.headers)
            assert hook.json() == {"status": "debited"}
            assert (await Admin(engine).wallet(user_email))["balance"] == 0
            assert (await user.get("/dashboard/admin/payments")).status_code == 404
            page = await admin.get("/dashboard/signin")
            r = await admin.post("/dashboard/signin", data={"csrf_token": csrf_of(page.text), "email": admin_email,
                                                            "password": PASSWORD})
            assert r.status_code == 303
            listing = await admin.get("/dashboard/admin/payments")
            assert listing.status_code == 200
            assert "Refunds could not take back ₹300.00" in listing.text
            assert user_email in listing.text and "₹300.00" in listing.text
            receipt = await admin.get(f"/dashboard/wallet/topups/{topup_id}/receipt")
            assert receipt.status_code == 200 and "Refunds" in receipt.text and "₹200.00" in receipt.text
    finally:
        await engine.dispose()
