"""The fake Razorpay (tests/fakes/razorpay_upstream.py) driven by Razorpay's own Python SDK,
``razorpay`` 2.0.1 (pinned in constraints.txt): what the SDK sends, the fake accepts; what the fake
answers, the SDK returns; its errors become the SDK's exceptions; its signatures verify with the
SDK's own ``utility`` functions.

Facts taken from the SDK's source (site-packages/razorpay):
* ``client.py``: ``Client(auth=(key_id, key_secret), base_url=...)``; requests use HTTP Basic auth;
  a non-2xx answer raises by ``error.code``: BAD_REQUEST_ERROR -> ``BadRequestError(description)``,
  GATEWAY_ERROR -> ``GatewayError``, anything else ``ServerError``. POST bodies are JSON.
* ``resources/order.py``: ``create(data)`` POSTs ``/v1/orders``; ``fetch(id)``; ``payments(id)`` GETs
  ``/v1/orders/{id}/payments``.
* ``resources/payment.py``: ``fetch(id)``, ``capture(id, amount, data)`` (``data`` adds ``currency``),
  ``refund(id, data)`` POSTs ``/v1/payments/{id}/refund``, ``fetch_multiple_refund(id)``.
* ``resources/refund.py``: ``create({payment_id, amount})`` POSTs ``/v1/refunds``; ``fetch(id)``.
* ``utility/utility.py``: ``verify_payment_signature({razorpay_order_id, razorpay_payment_id,
  razorpay_signature})`` = hex HMAC-SHA256 of ``order_id|payment_id`` with the key secret;
  ``verify_webhook_signature(body, signature, secret)`` = hex HMAC-SHA256 of the body; both raise
  ``SignatureVerificationError`` on a mismatch.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import razorpay
from razorpay.errors import BadRequestError, SignatureVerificationError

from tests.fakes.razorpay_upstream import FakeRazorpay


@pytest.fixture(scope="module")
def fake():
    f = FakeRazorpay().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def client(fake):
    return razorpay.Client(auth=(fake.key_id, fake.key_secret), base_url=fake.base_url)


class Receiver:
    """A webhook endpoint: records every POST (raw body and headers), answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/razorpay"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 5) -> list[tuple[bytes, dict]]:
        deadline = time.time() + timeout
        while len(self.received) < n and time.time() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(fake):
    r = Receiver()
    fake.webhook_url = r.url
    yield r
    r.close()


# ---------------------------------------------------------------------------- orders
def test_order_create_and_fetch(client):
    order = client.order.create({"amount": 50000, "currency": "INR", "receipt": "tu_0123456789abcdef0123",
                                 "notes": {"topup_id": "tu_0123456789abcdef0123"}})
    assert order["id"].startswith("order_") and len(order["id"]) == len("order_") + 14
    assert (order["entity"], order["amount"], order["amount_paid"], order["amount_due"], order["currency"],
            order["status"], order["attempts"]) == ("order", 50000, 0, 50000, "INR", "created", 0)
    assert order["receipt"] == "tu_0123456789abcdef0123"
    assert order["notes"] == {"topup_id": "tu_0123456789abcdef0123"}
    assert isinstance(order["created_at"], int)
    assert client.order.fetch(order["id"]) == order
    assert client.order.payments(order["id"]) == {"entity": "collection", "count": 0, "items": []}


@pytest.mark.parametrize("body, field", [
    ({"amount": 99, "currency": "INR"}, "amount"),
    ({"amount": "500", "currency": "INR"}, "amount"),
    ({"amount": 500.5, "currency": "INR"}, "amount"),
    ({"amount": 50000}, "currency"),
    ({"amount": 50000, "currency": "INR", "receipt": "r" * 41}, "receipt"),
    ({"amount": 50000, "currency": "INR", "notes": {f"k{i}": "v" for i in range(16)}}, "notes"),
])
def test_order_validation_errors_are_bad_request_errors(client, fake, body, field):
    with pytest.raises(BadRequestError) as err:
        client.order.create(body)
    assert str(err.value)
    assert fake.orders == {}
    raw = httpx.post(fake.base_url + "/v1/orders", json=body, auth=(fake.key_id, fake.key_secret)).json()
    assert raw["error"]["code"] == "BAD_REQUEST_ERROR" and raw["error"]["field"] == field


def test_wrong_key_is_refused(fake):
    bad = razorpay.Client(auth=(fake.key_id, "not-the-secret"), base_url=fake.base_url)
    with pytest.raises(BadRequestError, match="Authentication failed"):
        bad.order.create({"amount": 50000, "currency": "INR"})
    r = httpx.get(fake.base_url + "/v1/orders/order_x")
    assert r.status_code == 401 and r.json()["error"]["description"] == "Authentication failed"


def test_unknown_ids_are_bad_request_errors(client):
    for call in (lambda: client.order.fetch("order_Nope0000000000"), lambda: client.payment.fetch("pay_Nope0000000000"),
                 lambda: client.refund.fetch("rfnd_Nope00000000000")):
        with pytest.raises(BadRequestError, match="The id provided does not exist"):
            call()


# ---------------------------------------------------------------------------- paying
def test_a_payment_signature_verifies_with_the_sdk(client, fake):
    order = client.order.create({"amount": 50000, "currency": "INR"})
    paid = fake.pay(order["id"])
    response = paid.response
    assert set(response) == {"razorpay_payment_id", "razorpay_order_id", "razorpay_signature"}
    assert response["razorpay_order_id"] == order["id"]
    assert client.utility.verify_payment_signature(dict(response)) is True
    for forged in ({**response, "razorpay_signature": "0" * 64},
                   {**response, "razorpay_payment_id": "pay_Other000000000"},
                   {**response, "razorpay_order_id": "order_Other00000000"}):
        with pytest.raises(SignatureVerificationError):
            client.utility.verify_payment_signature(forged)


def test_a_captured_payment_as_the_sdk_reads_it(client, fake):
    order = client.order.create({"amount": 50000, "currency": "INR", "notes": {"topup_id": "tu_1"}})
    pay_id = fake.pay(order["id"], method="upi").response["razorpay_payment_id"]
    pay = client.payment.fetch(pay_id)
    assert (pay["id"], pay["entity"], pay["amount"], pay["currency"], pay["status"], pay["order_id"],
            pay["method"], pay["captured"], pay["amount_refunded"]) == (
        pay_id, "payment", 50000, "INR", "captured", order["id"], "upi", True, 0)
    assert pay["notes"] == {"topup_id": "tu_1"}
    order = client.order.fetch(order["id"])
    assert (order["status"], order["amount_paid"], order["amount_due"], order["attempts"]) == ("paid", 50000, 0, 1)
    assert client.order.payments(order["id"])["items"] == [pay]


def test_manual_capture_through_the_sdk(client, fake):
    fake.auto_capture = False
    order = client.order.create({"amount": 25050, "currency": "INR"})
    pay_id = fake.pay(order["id"]).response["razorpay_payment_id"]
    assert client.payment.fetch(pay_id)["status"] == "authorized"
    assert client.order.fetch(order["id"])["status"] == "attempted"
    with pytest.raises(BadRequestError, match="equal to the amount authorized"):
        client.payment.capture(pay_id, 100, {"currency": "INR"})
    captured = client.payment.capture(pay_id, 25050, {"currency": "INR"})
    assert (captured["status"], captured["captured"]) == ("captured", True)
    with pytest.raises(BadRequestError, match="already been captured"):
        client.payment.capture(pay_id, 25050, {"currency": "INR"})
    assert client.order.fetch(order["id"])["status"] == "paid"


def test_a_failed_payment(client, fake):
    order = client.order.create({"amount": 50000, "currency": "INR"})
    failed = fake.pay(order["id"], succeed=False)
    err = failed.response["error"]
    assert err["metadata"]["order_id"] == order["id"] and err["reason"] == "payment_failed"
    pay = client.payment.fetch(err["metadata"]["payment_id"])
    assert (pay["status"], pay["error_code"], pay["error_reason"]) == ("failed", "BAD_REQUEST_ERROR", "payment_failed")
    assert pay["error_description"]
    assert client.order.fetch(order["id"])["status"] == "attempted"
    assert [e.name for e in failed.events] == ["payment.failed"]


# ---------------------------------------------------------------------------- refunds
def test_refunds_through_the_sdk(client, fake):
    order = client.order.create({"amount": 50000, "currency": "INR"})
    pay_id = fake.pay(order["id"]).response["razorpay_payment_id"]
    part = client.payment.refund(pay_id, {"amount": 20000})
    assert (part["entity"], part["amount"], part["payment_id"], part["status"], part["currency"]) == (
        "refund", 20000, pay_id, "processed", "INR")
    assert part["id"].startswith("rfnd_")
    pay = client.payment.fetch(pay_id)
    assert (pay["amount_refunded"], pay["refund_status"], pay["status"]) == (20000, "partial", "captured")
    with pytest.raises(BadRequestError, match="greater than amount captured"):
        client.refund.create({"payment_id": pay_id, "amount": 30001})
    rest = client.refund.create({"payment_id": pay_id})
    assert rest["amount"] == 30000
    pay = client.payment.fetch(pay_id)
    assert (pay["amount_refunded"], pay["refund_status"], pay["status"]) == (50000, "full", "refunded")
    assert client.refund.fetch(part["id"]) == part
    assert {r["id"] for r in client.payment.fetch_multiple_refund(pay_id)["items"]} == {part["id"], rest["id"]}


def test_an_uncaptured_payment_cannot_be_refunded(client, fake):
    fake.auto_capture = False
    order = client.order.create({"amount": 50000, "currency": "INR"})
    pay_id = fake.pay(order["id"]).response["razorpay_payment_id"]
    with pytest.raises(BadRequestError, match="not been captured"):
        client.payment.refund(pay_id, {"amount": 100})


# ---------------------------------------------------------------------------- webhooks
def test_webhooks_are_signed_as_the_sdk_verifies_them(client, fake, receiver):
    order = client.order.create({"amount": 50000, "currency": "INR", "notes": {"topup_id": "tu_9"}})
    pay_id = fake.pay(order["id"]).response["razorpay_payment_id"]
    got = receiver.wait(3)
    assert [json.loads(b)["event"] for b, _ in got] == ["payment.authorized", "payment.captured", "order.paid"]
    for body, headers in got:
        assert headers["content-type"] == "application/json"
        assert client.utility.verify_webhook_signature(body.decode(), headers["x-razorpay-signature"],
                                                       fake.webhook_secret) is True
        with pytest.raises(SignatureVerificationError):
            client.utility.verify_webhook_signature(body.decode(), headers["x-razorpay-signature"], "other")
        assert headers["x-razorpay-event-id"].startswith("evt_")
        doc = json.loads(body)
        assert (doc["entity"], doc["account_id"][:4], isinstance(doc["created_at"], int)) == ("event", "acc_", True)
        assert doc["payload"]["payment"]["entity"]["id"] == pay_id
    captured = json.loads(got[1][0])
    assert captured["contains"] == ["payment"]
    assert captured["payload"]["payment"]["entity"]["status"] == "captured"
    paid = json.loads(got[2][0])
    assert paid["contains"] == ["payment", "order"]
    assert (paid["payload"]["order"]["entity"]["status"], paid["payload"]["order"]["entity"]["amount_paid"],
            paid["payload"]["order"]["entity"]["notes"]) == ("paid", 50000, {"topup_id": "tu_9"})
    assert all(d.status == 200 for d in fake.deliveries)


def test_a_redelivery_is_the_same_event(client, fake, receiver):
    fake.auto_deliver = False
    order = client.order.create({"amount": 50000, "currency": "INR"})
    captured = next(e for e in fake.pay(order["id"]).events if e.name == "payment.captured")
    assert receiver.received == []
    first, again = fake.deliver(captured), fake.deliver(captured)
    assert first.status == again.status == 200
    (b1, h1), (b2, h2) = receiver.received
    assert b1 == b2 and h1["x-razorpay-event-id"] == h2["x-razorpay-event-id"]
    assert h1["x-razorpay-signature"] == h2["x-razorpay-signature"]


def test_refund_and_failure_webhooks(client, fake, receiver):
    order = client.order.create({"amount": 50000, "currency": "INR"})
    pay_id = fake.pay(order["id"]).response["razorpay_payment_id"]
    receiver.wait(3)
    refund = client.payment.refund(pay_id, {"amount": 10000})
    got = receiver.wait(5)
    names = [json.loads(b)["event"] for b, _ in got[3:]]
    assert names == ["refund.created", "refund.processed"]
    doc = json.loads(got[4][0])
    assert doc["contains"] == ["refund", "payment"]
    assert doc["payload"]["refund"]["entity"] == refund
    assert doc["payload"]["payment"]["entity"]["amount_refunded"] == 10000
    other = client.order.create({"amount": 50000, "currency": "INR"})
    fake.pay(other["id"], succeed=False)
    failed = json.loads(receiver.wait(6)[5][0])
    assert failed["event"] == "payment.failed"
    assert failed["payload"]["payment"]["entity"]["status"] == "failed"
    for body, headers in receiver.received:
        assert client.utility.verify_webhook_signature(body.decode(), headers["x-razorpay-signature"],
                                                       fake.webhook_secret)


# ---------------------------------------------------------------------------- the checkout script
def test_checkout_script_and_its_pay_endpoint(client, fake):
    js = httpx.get(fake.checkout_url)
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "window.Razorpay = Razorpay" in js.text
    order = client.order.create({"amount": 50000, "currency": "INR"})
    pre = httpx.options(fake.base_url + "/_checkout/pay")
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    wrong = httpx.post(fake.base_url + "/_checkout/pay", json={"key": "rzp_test_other", "order_id": order["id"]})
    assert wrong.status_code == 400
    ok = httpx.post(fake.base_url + "/_checkout/pay", json={"key": fake.key_id, "order_id": order["id"]}).json()
    assert client.utility.verify_payment_signature(ok) is True
    again = httpx.post(fake.base_url + "/_checkout/pay", json={"key": fake.key_id, "order_id": order["id"]})
    assert again.status_code == 400 and "already paid" in again.json()["error"]["description"]
