"""Top-ups end to end below HTTP: the service, the real store (SQLite and PostgreSQL) and the fake
Razorpay (a real HTTP server) for every payment state: success, failure, duplicate webhook, webhook
before callback, forged signature, amount mismatch, refund (and one that finds the wallet spent),
and the callback/webhook race that must credit exactly once."""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text

from aicredits.domain.payments import TopupTerms, percent
from aicredits.errors import InvalidRequest, NotFound, UpstreamError
from aicredits.providers.payments.razorpay import Razorpay
from aicredits.providers.payments.testing import LocalCheckout
from aicredits.services.admin import Admin
from aicredits.services.audit import Actor, Audit
from aicredits.services.payments import PaymentsService
from aicredits.store import payments as repo
from aicredits.store.db import make_engine, migrate
from aicredits.store.tables import ledger_entries
from tests.fakes.razorpay_upstream import FakeRazorpay

INR = 1_000_000
TERMS = TopupTerms(min_paise=10_000, max_paise=10_000_000, presets=(50_000,))


@pytest.fixture(scope="module")
def fake():
    f = FakeRazorpay().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    fake.auto_deliver = False       # events go where each test sends them
    yield fake


def razorpay_for(fake: FakeRazorpay, base_url: str | None = None) -> Razorpay:
    return Razorpay(key_id=fake.key_id, key_secret=fake.key_secret, webhook_secret=fake.webhook_secret,
                    base_url=base_url or fake.base_url, checkout_url=fake.checkout_url, business_name="Test Co")


@dataclass
class Env:
    engine: object
    admin: Admin
    svc: PaymentsService
    account_id: int
    email: str

    async def wallet(self) -> dict:
        return await self.admin.wallet(self.email)

    async def entries(self, kind: str | None = None) -> list[dict]:
        async with self.engine.connect() as conn:
            q = select(ledger_entries).where(ledger_entries.c.account_id == self.account_id)
            if kind:
                q = q.where(ledger_entries.c.kind == kind)
            return [dict(r._mapping) for r in (await conn.execute(q.order_by(ledger_entries.c.id))).all()]


@asynccontextmanager
async def opened(url: str, fake: FakeRazorpay, terms: TopupTerms = TERMS, base_url: str | None = None):
    engine = make_engine(url)
    await migrate(engine, url)
    admin = Admin(engine)
    email = f"payer-{uuid.uuid4().hex[:8]}@example.com"
    acct = await admin.create_user(email)
    svc = PaymentsService(engine, {"razorpay": razorpay_for(fake, base_url), "test": LocalCheckout()}, terms)
    try:
        yield Env(engine, admin, svc, acct["id"], email)
        assert await admin.verify() == []      # every test leaves a ledger that verifies
    finally:
        await svc.close()
        await engine.dispose()


async def spend(engine, account_id: int, micros: int) -> None:
    """The customer's calls cost this much: a charge entry as a settled call writes one."""
    async with engine.begin() as conn:
        balance = (await conn.execute(text(
            "UPDATE wallets SET balance = balance - :m, total_spent = total_spent + :m WHERE account_id = :a "
            "RETURNING balance"), {"m": micros, "a": account_id})).scalar_one()
        await conn.execute(text(
            "INSERT INTO ledger_entries (account_id, kind, amount, balance_after, call_id, note, created_at) "
            "VALUES (:a, 'charge', :m, :b, :c, 'calls', 1)"), {"a": account_id, "m": -micros, "b": balance,
                                                               "c": uuid.uuid4().hex})


def events(result, *names):
    return [e for e in result.events if e.name in names]


async def deliver(env: Env, event):
    return await env.svc.handle_webhook("razorpay", event.body, event.lower_headers)


# ---------------------------------------------------------------------------- success
async def test_callback_credits_then_webhooks_change_nothing(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        started = await env.svc.start(env.account_id, "razorpay", "500")
        t = started.topup
        assert (t.status, t.amount_paise, t.credit_micros, t.provider) == ("created", 50_000, 500 * INR, "razorpay")
        opts = started.checkout["options"]
        assert (opts["key"], opts["amount"], opts["currency"], opts["order_id"]) == (
            fake.key_id, 50_000, "INR", t.order_id)
        assert fake.key_secret not in json.dumps(started.checkout)
        order = fake.orders[t.order_id]
        assert (order["amount"], order["receipt"], order["notes"]) == (50_000, t.id, {"topup_id": t.id})

        paid = fake.pay(t.order_id)
        out = await env.svc.confirm_callback(env.account_id, "razorpay", paid.response,
                                             Actor(env.account_id, env.email, "198.51.100.4"))
        assert out.status == "credited" and out.topup.status == "paid"
        for e in events(paid, "payment.authorized", "payment.captured", "order.paid"):
            assert (await deliver(env, e)).status == "already_credited"
        w = await env.wallet()
        assert (w["balance"], w["total_added"]) == (500 * INR, 500 * INR)
        (entry,) = await env.entries()
        assert (entry["kind"], entry["amount"], entry["balance_after"], entry["call_id"]) == (
            "topup", 500 * INR, 500 * INR, paid.payment["id"])
        receipt = await env.svc.receipt(env.account_id, t.id)
        assert receipt["payment"]["id"] == paid.payment["id"] and receipt["payment"]["source"] == "callback"
        (audit,) = await Audit(env.engine).recent(action="topup")
        assert (audit["actor"], audit["actor_id"], audit["ip"], audit["target"]) == (
            env.email, env.account_id, "198.51.100.4", t.id)
        assert audit["detail"]["payment_id"] == paid.payment["id"] and audit["detail"]["credit_micros"] == 500 * INR
        assert receipt["payment"]["method"] == "card"


async def test_webhook_before_callback(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "750.25")).topup
        paid = fake.pay(t.order_id)
        (captured,) = events(paid, "payment.captured")
        assert (await deliver(env, captured)).status == "credited"
        out = await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        assert out.status == "already_credited" and out.topup.status == "paid"
        assert (await env.wallet())["balance"] == 75_025 * 10_000       # 750.25 INR to the paisa
        assert len(await env.entries("topup")) == 1
        assert (await env.svc.receipt(env.account_id, t.id))["payment"]["source"] == "webhook"


async def test_duplicate_webhooks_credit_once(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id)
        (order_paid,) = events(paid, "order.paid")
        results = [(await deliver(env, order_paid)).status for _ in range(3)]
        assert results == ["credited", "already_credited", "already_credited"]
        (captured,) = events(paid, "payment.captured")
        assert (await deliver(env, captured)).status == "already_credited"
        assert (await env.wallet())["balance"] == 500 * INR
        assert len(await env.entries("topup")) == 1


async def test_fee_and_gst_are_paid_on_top_and_the_wallet_gets_the_credits(migrated_db_url, fake):
    terms = TopupTerms(10_000, 10_000_000, (), fee=percent("2"), gst=percent("18"))
    async with opened(migrated_db_url, fake, terms) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        assert (t.fee_paise, t.gst_paise, t.amount_paise) == (1_000, 9_180, 60_180)
        assert fake.orders[t.order_id]["amount"] == 60_180          # Razorpay collects 601.80
        paid = fake.pay(t.order_id)
        await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        assert (await env.wallet())["balance"] == 500 * INR          # the wallet receives 500.00


async def test_manual_capture_is_captured_before_crediting(migrated_db_url, fake):
    fake.auto_capture = False
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "200")).topup
        paid = fake.pay(t.order_id)
        assert fake.payments[paid.payment["id"]]["status"] == "authorized"
        out = await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        assert out.status == "credited"
        assert fake.payments[paid.payment["id"]]["status"] == "captured"
        # the authorized webhook, late: the payment is captured already, nothing more happens
        (authorized,) = events(paid, "payment.authorized")
        assert (await deliver(env, authorized)).status == "already_credited"
        assert (await env.wallet())["balance"] == 200 * INR


# ---------------------------------------------------------------------------- failure
async def test_failure_then_a_retry_on_the_same_order(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        failed = fake.pay(t.order_id, succeed=False)
        out = await deliver(env, events(failed, "payment.failed")[0])
        assert out.status == "failed" and out.topup.status == "failed" and "declined" in out.topup.error
        assert (await env.wallet())["balance"] == 0
        paid = fake.pay(t.order_id)          # Checkout lets the customer try again
        assert (await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)).status == "credited"
        # the failure's webhook redelivered late changes nothing
        assert (await deliver(env, events(failed, "payment.failed")[0])).topup.status == "paid"
        assert (await env.wallet())["balance"] == 500 * INR


# ---------------------------------------------------------------------------- refusals
async def test_a_forged_callback_signature_credits_nothing(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id)
        forged = {**paid.response, "razorpay_signature": "f" * 64}
        with pytest.raises(InvalidRequest, match="signature does not verify"):
            await env.svc.confirm_callback(env.account_id, "razorpay", forged)
        other_secret = {**paid.response, "razorpay_signature": hmac.new(
            b"guess", f"{t.order_id}|{paid.payment['id']}".encode(), "sha256").hexdigest()}
        with pytest.raises(InvalidRequest, match="signature does not verify"):
            await env.svc.confirm_callback(env.account_id, "razorpay", other_secret)
        with pytest.raises(InvalidRequest):
            await env.svc.confirm_callback(env.account_id, "razorpay", {})
        assert (await env.wallet())["balance"] == 0 and await env.entries() == []


async def test_a_forged_webhook_credits_nothing(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        (captured,) = events(fake.pay(t.order_id), "payment.captured")
        headers = captured.lower_headers
        for bad in ({**headers, "x-razorpay-signature": "0" * 64}, {k: v for k, v in headers.items()
                                                                    if k != "x-razorpay-signature"}):
            with pytest.raises(InvalidRequest, match="signature does not verify"):
                await env.svc.handle_webhook("razorpay", captured.body, bad)
        tampered = captured.body.replace(b'"amount":50000', b'"amount":5000000')
        assert tampered != captured.body
        with pytest.raises(InvalidRequest, match="signature does not verify"):
            await env.svc.handle_webhook("razorpay", tampered, headers)
        assert (await env.wallet())["balance"] == 0 and await env.entries() == []


async def test_an_amount_mismatch_is_refused(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id, amount=40_000)        # a payment of 400.00 on a 500.00 order
        with pytest.raises(InvalidRequest, match=r"400\.00 INR does not match the top-up's 500\.00 INR"):
            await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        out = await deliver(env, events(paid, "payment.captured")[0])
        assert out.status == "refused" and "does not match" in out.topup.error
        assert out.topup.status == "created"
        assert (await env.wallet())["balance"] == 0 and await env.entries() == []


async def test_an_unknown_order_is_ignored_and_a_callback_needs_its_owner(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        order = fake.create_order(50_000)           # made by another integration on the same account
        paid = fake.pay(order["id"])
        assert (await deliver(env, events(paid, "payment.captured")[0])).status == "ignored"
        with pytest.raises(NotFound):
            await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        mine = fake.pay(t.order_id)
        with pytest.raises(NotFound):               # someone else's session cannot confirm it
            await env.svc.confirm_callback(env.account_id + 1000, "razorpay", mine.response)
        assert (await env.wallet())["balance"] == 0


async def test_a_second_payment_on_a_paid_top_up_is_not_credited(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        first = fake.pay(t.order_id)
        await env.svc.confirm_callback(env.account_id, "razorpay", first.response)
        fake.orders[t.order_id]["status"] = "attempted"     # what Razorpay never allows: a second capture
        second = fake.pay(t.order_id, amount=50_000)
        out = await deliver(env, events(second, "payment.captured")[0])
        assert out.status == "already_credited" and "second payment" in out.topup.error
        assert (await env.wallet())["balance"] == 500 * INR


# ---------------------------------------------------------------------------- starting
async def test_start_checks_amount_and_provider(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        for amount, message in (("99.99", "smallest top-up is 100.00"), ("100000.01", "largest top-up"),
                                ("12.345", "not an amount")):
            with pytest.raises(InvalidRequest, match=message):
                await env.svc.start(env.account_id, "razorpay", amount)
        with pytest.raises(InvalidRequest, match="not enabled"):
            await env.svc.start(env.account_id, "stripe", "500")
        assert fake.orders == {}
        assert await env.svc.topups(env.account_id) == []


async def test_razorpay_unreachable_fails_the_top_up_cleanly(migrated_db_url, fake):
    from tests.conftest import free_port
    async with opened(migrated_db_url, fake, base_url=f"http://127.0.0.1:{free_port()}") as env:
        with pytest.raises(UpstreamError, match="could not be reached") as err:
            await env.svc.start(env.account_id, "razorpay", "500")
        assert fake.key_secret not in str(err.value.message)
        (t,) = await env.svc.topups(env.account_id)
        assert t.status == "failed" and t.order_id is None


# ---------------------------------------------------------------------------- refunds
async def test_refunds_debit_the_credits_once(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id)
        await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        _, evs = fake.refund(paid.payment["id"], 20_000)
        created, processed = evs
        assert (await deliver(env, created)).status == "ignored"       # money moves when processed
        assert (await deliver(env, processed)).status == "debited"
        assert (await deliver(env, processed)).status == "already_credited"   # a redelivery
        w = await env.wallet()
        assert (w["balance"], w["total_added"]) == (300 * INR, 300 * INR)
        (refund,) = await env.entries("refund")
        assert (refund["amount"], refund["balance_after"]) == (-200 * INR, 300 * INR)
        _, (_, rest) = fake.refund(paid.payment["id"])
        await deliver(env, rest)
        assert (await env.wallet())["balance"] == 0
        receipt = await env.svc.receipt(env.account_id, t.id)
        assert [r["amount_paise"] for r in receipt["refunds"]] == [20_000, 30_000]
        assert receipt["payment"]["refunded_paise"] == 50_000
        assert receipt["payment"]["refund_shortfall_micros"] == 0
        audits = await Audit(env.engine).recent(action="topup.refunded")
        assert [(a["actor"], a["target"], a["detail"]["debited_micros"]) for a in audits] == [
            ("razorpay", t.id, 300 * INR), ("razorpay", t.id, 200 * INR)]


async def test_a_refund_never_takes_the_wallet_below_zero(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id)
        await env.svc.confirm_callback(env.account_id, "razorpay", paid.response)
        await spend(env.engine, env.account_id, 420_500_000)     # then the payment is refunded in full
        _, (_, processed) = fake.refund(paid.payment["id"])
        out = await deliver(env, processed)
        assert out.status == "debited"
        w = await env.wallet()
        assert w["balance"] == 0
        (pay,) = [r for r in (await env.svc.admin_overview())["topups"] if r["id"] == t.id]
        assert pay["refund_shortfall_micros"] == 420_500_000           # what the admin sees
        assert (await env.svc.admin_overview())["shortfall_micros"] >= 420_500_000
        refunds = (await env.svc.receipt(None, t.id))["refunds"]
        assert [(r["claimed_micros"], r["debited_micros"], r["shortfall_micros"]) for r in refunds] == [
            (500 * INR, 79_500_000, 420_500_000)]


async def test_a_refund_of_a_payment_that_credited_nothing_is_ignored(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        paid = fake.pay(t.order_id, amount=40_000)       # refused for its amount, then refunded
        _, (_, processed) = fake.refund(paid.payment["id"])
        assert (await deliver(env, processed)).status == "ignored"
        assert await env.entries() == []


# ---------------------------------------------------------------------------- the race
async def test_callback_and_webhooks_racing_credit_exactly_once(migrated_db_url, fake):
    """Two gateway processes (two engines): one gets the browser's callback, the other Razorpay's
    payment.captured and order.paid, all at the same moment; five top-ups in a row."""
    async with opened(migrated_db_url, fake) as env:
        engine2 = make_engine(migrated_db_url)
        other = PaymentsService(engine2, {"razorpay": razorpay_for(fake)}, TERMS)
        try:
            for _ in range(5):
                t = (await env.svc.start(env.account_id, "razorpay", "500")).topup
                paid = fake.pay(t.order_id)
                captured, order_paid = events(paid, "payment.captured", "order.paid")
                results = await asyncio.gather(
                    env.svc.confirm_callback(env.account_id, "razorpay", paid.response),
                    other.handle_webhook("razorpay", captured.body, captured.lower_headers),
                    other.handle_webhook("razorpay", order_paid.body, order_paid.lower_headers),
                    env.svc.handle_webhook("razorpay", captured.body, captured.lower_headers))
                assert sorted(r.status for r in results) == ["already_credited"] * 3 + ["credited"]
        finally:
            await other.close()
            await engine2.dispose()
        assert (await env.wallet())["balance"] == 2_500 * INR
        assert len(await env.entries("topup")) == 5
        assert len(await Audit(env.engine).recent(action="topup")) == 5


async def test_the_unique_constraint_is_what_stops_a_second_credit(migrated_db_url, fake):
    """Not a check-then-insert: two inserts of one payment id, the second inside a transaction that
    has already seen no row, cannot both succeed."""
    async with opened(migrated_db_url, fake) as env:
        t = (await env.svc.start(env.account_id, "test", "500")).topup
        kw = {"payment_id": "pay_Same0000000000", "provider": "test", "topup_id": t.id,
              "account_id": env.account_id, "amount_paise": 50_000, "credit_micros": 500 * INR, "method": "test",
              "source": "checkout"}
        async with env.engine.begin() as conn:
            assert await repo.claim_payment(conn, **kw) is True
            assert await repo.claim_payment(conn, **kw) is False
            assert await repo.claim_payment(conn, **{**kw, "payment_id": "pay_Other000000000"}) is False
            await conn.rollback()


# ---------------------------------------------------------------------------- the test provider
async def test_the_test_provider_pays_or_fails_on_a_click(migrated_db_url, fake):
    async with opened(migrated_db_url, fake) as env:
        started = await env.svc.start(env.account_id, "test", "500")
        t = started.topup
        assert started.checkout == {"page": f"test-checkout/{t.id}"} and t.order_id.startswith("test_order_")
        failed = await env.svc.complete_test(env.account_id, t.id, succeed=False)
        assert failed.status == "failed" and failed.topup.status == "failed"
        clicks = await asyncio.gather(*(env.svc.complete_test(env.account_id, t.id, succeed=True) for _ in range(3)))
        assert sorted(c.status for c in clicks) == ["already_credited", "already_credited", "credited"]
        assert (await env.wallet())["balance"] == 500 * INR
        with pytest.raises(NotFound):
            await env.svc.complete_test(env.account_id + 1000, t.id, succeed=True)
        rz = (await env.svc.start(env.account_id, "razorpay", "500")).topup
        with pytest.raises(InvalidRequest):
            await env.svc.complete_test(env.account_id, rz.id, succeed=True)
