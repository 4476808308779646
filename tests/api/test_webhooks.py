"""POST /webhooks/razorpay on the gateway app itself (in-process, httpx's ASGI transport), with the
fake Razorpay's signed events: no session and no key needed, the signature is the authentication."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from aicredits.app import Gateway
from aicredits.services.admin import Admin
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate
from tests.fakes.razorpay_upstream import FakeRazorpay

INR = 1_000_000


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


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


def razorpay_env(fake: FakeRazorpay) -> dict:
    return {"AICREDITS_RAZORPAY_KEY_ID": fake.key_id, "AICREDITS_RAZORPAY_KEY_SECRET": fake.key_secret,
            "AICREDITS_RAZORPAY_WEBHOOK_SECRET": fake.webhook_secret,
            "AICREDITS_RAZORPAY_BASE_URL": fake.base_url}


@asynccontextmanager
async def gateway(url: str, env: dict):
    engine = make_engine(url)
    await migrate(engine, url)
    gw = Gateway(load_settings({"AICREDITS_DATABASE_URL": url, **env}))
    await gw.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as client:
            yield gw, client, Admin(engine)
    finally:
        await gw.shutdown()
        await engine.dispose()


async def test_a_signed_webhook_credits_once(db_url, fake):
    async with gateway(db_url, razorpay_env(fake)) as (gw, client, admin):
        email = f"hook-{uuid.uuid4().hex[:8]}@example.com"
        acct = await admin.create_user(email)
        t = (await gw.services.payments.start(acct["id"], "razorpay", "500")).topup
        paid = fake.pay(t.order_id)
        statuses = []
        for event in paid.events + paid.events:          # every event twice, as Razorpay may retry
            r = await client.post("/webhooks/razorpay", content=event.body, headers=event.headers)
            assert r.status_code == 200
            statuses.append(r.json()["status"])
        assert statuses.count("credited") == 1
        assert set(statuses) == {"credited", "already_credited"}
        assert (await admin.wallet(email))["balance"] == 500 * INR


async def test_a_forged_webhook_is_refused_in_the_error_shape(db_url, fake):
    async with gateway(db_url, razorpay_env(fake)) as (gw, client, admin):
        acct = await admin.create_user(f"hook-{uuid.uuid4().hex[:8]}@example.com")
        t = (await gw.services.payments.start(acct["id"], "razorpay", "500")).topup
        (event,) = [e for e in fake.pay(t.order_id).events if e.name == "payment.captured"]
        r = await client.post("/webhooks/razorpay", content=event.body,
                              headers={**event.headers, "X-Razorpay-Signature": "ab" * 32})
        assert r.status_code == 400
        assert r.json() == {"error": {"message": "The webhook signature does not verify; nothing was done.",
                                      "type": "invalid_request_error", "code": 400}}
        assert fake.webhook_secret not in r.text
        assert (await client.post("/webhooks/razorpay", content=b"{}")).status_code == 400
        assert (await client.get("/webhooks/razorpay")).status_code == 405
        big = await client.post("/webhooks/razorpay", content=b"x" * (1024 * 1024 + 1), headers=event.headers)
        assert big.status_code == 413
        assert (await gw.services.payments.topup(None, t.id)).status == "created"


async def test_without_razorpay_the_webhook_is_not_found(tmp_path):
    async with gateway(f"sqlite:///{tmp_path}/a.db", {}) as (_gw, client, _admin):
        r = await client.post("/webhooks/razorpay", content=b"{}")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
