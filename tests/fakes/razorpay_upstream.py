"""A fake Razorpay: a real aiohttp server on 127.0.0.1 in a background thread, speaking the parts of
Razorpay's REST API the top-ups use, serving a small Checkout script, and sending signed webhooks.
Checked against Razorpay's own SDK, ``razorpay`` 2.0.1, by tests/fakes/test_razorpay_upstream.py.

* Auth: HTTP Basic ``key_id:key_secret``; missing or wrong is 401 ``{"error": {"code":
  "BAD_REQUEST_ERROR", "description": "Authentication failed", ...}}``. Every error has Razorpay's
  shape ``{"error": {"code", "description", "source", "step", "reason", "metadata", "field"?}}``; an
  unknown id is 400 "The id provided does not exist".
* ``POST /v1/orders`` ``{amount (paise, integer >= 100), currency ("INR"), receipt (<= 40 chars),
  notes (<= 15 keys, values <= 256 chars), partial_payment}`` -> the order entity ``{id: order_<14>,
  entity: "order", amount, amount_paid, amount_due, currency, receipt, offer_id, status:
  created|attempted|paid, attempts, notes, created_at}``. ``GET /v1/orders/{id}``,
  ``GET /v1/orders/{id}/payments`` (a collection ``{entity, count, items}``).
* ``GET /v1/payments/{id}`` -> the payment entity ``{id: pay_<14>, entity: "payment", amount, currency,
  status: authorized|captured|failed|refunded, order_id, method, amount_refunded, refund_status,
  captured, description, email, contact, notes, fee, tax, error_code, error_description,
  error_source, error_step, error_reason, created_at}``; ``POST /v1/payments/{id}/capture``
  ``{amount, currency}``; ``POST /v1/payments/{id}/refund`` ``{amount?}`` and ``POST /v1/refunds``
  ``{payment_id, amount?}`` -> the refund entity ``{id: rfnd_<14>, entity: "refund", amount, currency,
  payment_id, notes, receipt, acquirer_data, created_at, batch_id, status: "processed",
  speed_processed, speed_requested}``; ``GET /v1/payments/{id}/refunds``, ``GET /v1/refunds/{id}``.
* Webhooks: ``{"entity": "event", "account_id", "event", "contains": [...], "payload": {name: {"entity":
  {...}}}, "created_at"}`` POSTed to :attr:`FakeRazorpay.webhook_url` with ``X-Razorpay-Signature``
  (hex HMAC-SHA256 of the exact body with the webhook secret) and ``X-Razorpay-Event-Id`` (the same on a
  redelivery). A payment sends ``payment.authorized`` then, once captured, ``payment.captured`` and
  ``order.paid``; a failure ``payment.failed``; a refund ``refund.created`` and ``refund.processed``.
* Checkout: ``GET /v1/checkout.js`` defines ``window.Razorpay(options)`` with ``open()`` and
  ``on("payment.failed", cb)`` like Razorpay's; its dialog has "Pay" and "Fail" buttons that POST to
  ``/_checkout/pay`` here (the fake's stand-in for the card form; not part of Razorpay's API) and call
  ``options.handler({razorpay_payment_id, razorpay_order_id, razorpay_signature})`` with the signature
  hex HMAC-SHA256(order_id + "|" + payment_id, key secret), or the ``payment.failed`` callbacks.

Test controls (Python): :meth:`pay` (what a customer's payment does), :meth:`refund`, :meth:`deliver`
(send an event, again if wanted), ``auto_capture``, ``auto_deliver``, and the ``outbox`` of events.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field

import httpx
from aiohttp import ClientSession, ClientTimeout, web

ALPHABET = string.ascii_letters + string.digits
ACCOUNT_ID = "acc_FakeAccount0001"


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(ALPHABET) for _ in range(14))


def hmac_hex(message: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def error_body(description: str, *, field_name: str | None = None, code: str = "BAD_REQUEST_ERROR") -> dict:
    err = {"code": code, "description": description, "source": "NA", "step": "NA", "reason": "NA",
           "metadata": {}}
    if field_name:
        err["field"] = field_name
        err["reason"] = "input_validation_failed"
        err["source"] = "business"
        err["step"] = "payment_initiation"
    return {"error": err}


def _error(status: int, description: str, field_name: str | None = None, code: str = "BAD_REQUEST_ERROR"):
    return web.json_response(error_body(description, field_name=field_name, code=code), status=status)


class RefundRefused(Exception):
    """What Razorpay answers 400 to (a refund of an uncaptured payment, or too much)."""


@dataclass
class Event:
    id: str
    name: str
    body: bytes
    signature: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Razorpay-Signature": self.signature,
                "X-Razorpay-Event-Id": self.id, "User-Agent": "Razorpay-Webhook/v1"}

    @property
    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Delivery:
    event: Event
    status: int
    answer: str


@dataclass
class PayResult:
    payment: dict
    events: list[Event]
    response: dict = field(default_factory=dict)   # what Checkout's handler (or payment.failed) receives


class FakeRazorpay:
    def __init__(self, key_id: str = "rzp_test_FakeKeyId00001", key_secret: str = "fake-razorpay-key-secret",
                 webhook_secret: str = "fake-razorpay-webhook-secret") -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None
        self.auto_capture = True          # Razorpay's default for orders
        self.auto_deliver = True          # send events to webhook_url as they happen
        self.orders: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.outbox: list[Event] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeRazorpay:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-razorpay", daemon=True)
        self._thread.start()
        ready.wait()
        self.port = asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def _astart(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.25, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._session = ClientSession(timeout=ClientTimeout(total=15))
        return self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop

        async def cleanup() -> None:
            await self._session.close()
            await self._runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def reset(self) -> None:
        with self._lock:
            self.orders.clear()
            self.payments.clear()
            self.refunds.clear()
            self.outbox.clear()
            self.deliveries.clear()
            self.requests.clear()
            self.webhook_url = None
            self.auto_capture = True
            self.auto_deliver = True

    @property
    def checkout_url(self) -> str:
        return self.base_url + "/v1/checkout.js"

    # ------------------------------------------------------------------ test controls
    def create_order(self, amount: int, receipt: str | None = None, notes: dict | None = None) -> dict:
        """An order as POST /v1/orders makes it (for tests that need one without a client)."""
        with self._lock:
            order = {"id": new_id("order"), "entity": "order", "amount": amount, "amount_paid": 0,
                     "amount_due": amount, "currency": "INR", "receipt": receipt, "offer_id": None,
                     "status": "created", "attempts": 0, "notes": notes or [], "created_at": int(time.time())}
            self.orders[order["id"]] = order
            return dict(order)

    def pay(self, order_id: str, *, succeed: bool = True, amount: int | None = None, method: str = "card",
            deliver: bool | None = None) -> PayResult:
        """A customer pays the order in Checkout: a payment of the order's amount (or `amount`, to
        model a tampered payment), authorized then captured (``auto_capture``), or failed."""
        with self._lock:
            order = self.orders[order_id]
            order["attempts"] += 1
            if order["status"] == "created":
                order["status"] = "attempted"
            pay = {"id": new_id("pay"), "entity": "payment", "amount": amount if amount is not None else
                   order["amount_due"], "currency": order["currency"], "status": "authorized",
                   "order_id": order_id, "invoice_id": None, "international": False, "method": method,
                   "amount_refunded": 0, "refund_status": None, "captured": False,
                   "description": "Fake Checkout payment", "card_id": None, "bank": None, "wallet": None,
                   "vpa": None, "email": "customer@example.com", "contact": "+919000090000",
                   "notes": order["notes"], "fee": None, "tax": None, "error_code": None, "error_description": None,
                   "error_source": None, "error_step": None, "error_reason": None, "acquirer_data": {},
                   "created_at": int(time.time())}
            self.payments[pay["id"]] = pay
            events: list[Event] = []
            if not succeed:
                pay.update(status="failed", error_code="BAD_REQUEST_ERROR",
                           error_description="Payment failed because the card was declined.",
                           error_source="customer", error_step="payment_authentication",
                           error_reason="payment_failed")
                events.append(self._event("payment.failed", payment=pay))
                response = {"error": {"code": "BAD_REQUEST_ERROR", "description": pay["error_description"],
                                      "source": "customer", "step": "payment_authentication",
                                      "reason": "payment_failed",
                                      "metadata": {"order_id": order_id, "payment_id": pay["id"]}}}
            else:
                events.append(self._event("payment.authorized", payment=pay))
                if self.auto_capture:
                    events += self._capture(pay)
                response = {"razorpay_payment_id": pay["id"], "razorpay_order_id": order_id,
                            "razorpay_signature": hmac_hex(f"{order_id}|{pay['id']}".encode(), self.key_secret)}
            self.outbox += events
            result = PayResult(dict(pay), events, response)
        if deliver if deliver is not None else (self.auto_deliver and self.webhook_url):
            self.deliver_soon(events)
        return result

    def refund(self, payment_id: str, amount: int | None = None, deliver: bool | None = None) -> tuple[dict, list]:
        with self._lock:
            refund, events = self._refund(self.payments[payment_id], amount)
        if deliver if deliver is not None else (self.auto_deliver and self.webhook_url):
            self.deliver_soon(events)
        return refund, events

    def sign(self, body: bytes) -> str:
        return hmac_hex(body, self.webhook_secret)

    def deliver(self, event: Event, url: str | None = None) -> Delivery:
        """POST one event (again, for a redelivery) to the webhook URL, from the calling thread."""
        r = httpx.post(url or self.webhook_url, content=event.body, headers=event.headers, timeout=15)
        d = Delivery(event, r.status_code, r.text)
        with self._lock:
            self.deliveries.append(d)
        return d

    def deliver_soon(self, events: list[Event]) -> None:
        """Send events in order from the fake's own loop (as Razorpay does, apart from the request)."""
        asyncio.run_coroutine_threadsafe(self._deliver_all(list(events)), self._loop)

    async def _deliver_all(self, events: list[Event]) -> None:
        for event in events:
            try:
                async with self._session.post(self.webhook_url, data=event.body, headers=event.headers) as r:
                    d = Delivery(event, r.status, await r.text())
            except Exception as exc:  # noqa: BLE001 - recorded: a test looks at deliveries
                d = Delivery(event, 0, repr(exc))
            with self._lock:
                self.deliveries.append(d)

    # ------------------------------------------------------------------ internals
    def _event(self, name: str, **entities: dict) -> Event:
        doc = {"entity": "event", "account_id": ACCOUNT_ID, "event": name, "contains": list(entities),
               "payload": {k: {"entity": dict(v)} for k, v in entities.items()}, "created_at": int(time.time())}
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Event(new_id("evt"), name, body, self.sign(body))

    def _capture(self, pay: dict) -> list[Event]:
        pay.update(status="captured", captured=True, fee=round(pay["amount"] * 0.02), tax=0)
        order = self.orders[pay["order_id"]]
        order["amount_paid"] += pay["amount"]
        order["amount_due"] = max(0, order["amount"] - order["amount_paid"])
        if order["amount_due"] == 0:
            order["status"] = "paid"
        return [self._event("payment.captured", payment=pay), self._event("order.paid", payment=pay, order=order)]

    def _refund(self, pay: dict, amount: int | None) -> tuple[dict, list[Event]]:
        if pay["status"] not in ("captured", "refunded"):
            raise RefundRefused("The payment has not been captured yet")
        left = pay["amount"] - pay["amount_refunded"]
        amount = left if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 100:
            raise RefundRefused("The amount must be atleast INR 1.00")
        if amount > left:
            raise RefundRefused("The refund amount provided is greater than amount captured")
        refund = {"id": new_id("rfnd"), "entity": "refund", "amount": amount, "currency": pay["currency"],
                  "payment_id": pay["id"], "notes": [], "receipt": None, "acquirer_data": {"arn": None},
                  "created_at": int(time.time()), "batch_id": None, "status": "processed",
                  "speed_processed": "normal", "speed_requested": "normal"}
        self.refunds[refund["id"]] = refund
        pay["amount_refunded"] += amount
        pay["refund_status"] = "full" if pay["amount_refunded"] == pay["amount"] else "partial"
        if pay["refund_status"] == "full":
            pay["status"] = "refunded"
        events = [self._event("refund.created", refund=refund, payment=pay),
                  self._event("refund.processed", refund=refund, payment=pay)]
        self.outbox += events
        return dict(refund), events

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user, self.key_id) and hmac.compare_digest(password, self.key_secret)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        with self._lock:
            self.requests.append((request.method, path))
        if path == "/v1/checkout.js" and request.method == "GET":
            return web.Response(text=CHECKOUT_JS, content_type="application/javascript")
        if path == "/_checkout/pay":
            return await self._checkout_pay(request)
        if not self._authorized(request):
            return _error(401, "Authentication failed")
        raw = await request.read()
        body: dict = {}
        if request.method in ("POST", "PATCH") and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "The request body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "The request body must be a JSON object")
        parts = path.split("/")[2:]    # after /v1
        with self._lock:
            return self._route(request.method, parts, body)

    def _route(self, method: str, parts: list[str], body: dict) -> web.Response:
        ok = web.json_response
        if parts == ["orders"] and method == "POST":
            return self._create_order(body)
        if len(parts) >= 2 and parts[0] == "orders" and method == "GET":
            order = self.orders.get(parts[1])
            if order is None:
                return _error(400, "The id provided does not exist")
            if len(parts) == 2:
                return ok(order)
            if parts[2:] == ["payments"]:
                items = [p for p in self.payments.values() if p["order_id"] == order["id"]]
                return ok({"entity": "collection", "count": len(items), "items": items})
        if len(parts) >= 2 and parts[0] == "payments":
            pay = self.payments.get(parts[1])
            if pay is None:
                return _error(400, "The id provided does not exist")
            rest = parts[2:]
            if rest == [] and method == "GET":
                return ok(pay)
            if rest == ["capture"] and method == "POST":
                return self._capture_api(pay, body)
            if rest == ["refund"] and method == "POST":
                return self._refund_api(pay, body.get("amount"))
            if rest == ["refunds"] and method == "GET":
                items = [r for r in self.refunds.values() if r["payment_id"] == pay["id"]]
                return ok({"entity": "collection", "count": len(items), "items": items})
        if parts == ["refunds"] and method == "POST":
            pay = self.payments.get(str(body.get("payment_id")))
            if pay is None:
                return _error(400, "The id provided does not exist")
            return self._refund_api(pay, body.get("amount"))
        if len(parts) == 2 and parts[0] == "refunds" and method == "GET":
            refund = self.refunds.get(parts[1])
            return ok(refund) if refund else _error(400, "The id provided does not exist")
        return _error(400, "The requested URL was not found on the server.")

    def _create_order(self, body: dict) -> web.Response:
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int):
            return _error(400, "The amount must be an integer.", "amount")
        if amount < 100:
            return _error(400, "The amount must be atleast INR 1.00", "amount")
        if body.get("currency") != "INR":
            return _error(400, "The currency field is required and the fake serves INR only.", "currency")
        receipt = body.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            return _error(400, "receipt: the length must be no more than 40.", "receipt")
        notes = body.get("notes", [])
        if notes and (not isinstance(notes, dict) or len(notes) > 15
                      or any(len(str(v)) > 256 for v in notes.values())):
            return _error(400, "notes: at most 15 keys, each value at most 256 characters.", "notes")
        return web.json_response(self.create_order(amount, receipt, notes or []))

    def _capture_api(self, pay: dict, body: dict) -> web.Response:
        if pay["status"] == "captured":
            return _error(400, "This payment has already been captured")
        if pay["status"] != "authorized":
            return _error(400, "Only payments which have been authorized and not yet captured can be captured")
        if body.get("amount") != pay["amount"]:
            return _error(400, "Capture amount must be equal to the amount authorized", "amount")
        if body.get("currency", "INR") != pay["currency"]:
            return _error(400, "The currency should be same as the payment currency", "currency")
        events = self._capture(pay)
        self.outbox += events
        if self.auto_deliver and self.webhook_url:
            self.deliver_soon(events)
        return web.json_response(pay)

    def _refund_api(self, pay: dict, amount) -> web.Response:
        try:
            refund, events = self._refund(pay, amount)
        except RefundRefused as exc:
            return _error(400, str(exc), "amount")
        if self.auto_deliver and self.webhook_url:
            self.deliver_soon(events)
        return web.json_response(refund)

    async def _checkout_pay(self, request: web.Request) -> web.Response:
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "content-type",
                "Access-Control-Allow-Methods": "POST"}
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        with self._lock:
            order = self.orders.get(str(body.get("order_id")))
            if body.get("key") != self.key_id or order is None:
                return web.json_response(error_body("Checkout was opened with an unknown key or order"),
                                         status=400, headers=cors)
            if order["status"] == "paid":
                return web.json_response(error_body("This order is already paid"), status=400, headers=cors)
        result = self.pay(order["id"], succeed=body.get("outcome") != "fail")
        return web.json_response(result.response, headers=cors)


CHECKOUT_JS = r"""
/* The fake Razorpay's Checkout: window.Razorpay(options) with open() and on(); a dialog with Pay and Fail. */
(function () {
  var origin = new URL(document.currentScript.src).origin;
  function Razorpay(options) { this.options = options || {}; this.callbacks = {}; }
  Razorpay.prototype.on = function (name, cb) { (this.callbacks[name] = this.callbacks[name] || []).push(cb); };
  Razorpay.prototype.open = function () {
    var self = this, o = this.options;
    var box = document.createElement("div");
    box.id = "razorpay-fake-checkout";
    box.setAttribute("role", "dialog");
    box.style.cssText = "position:fixed;inset:0;background:rgba(0,0,0,.5);display:flex;" +
      "align-items:center;justify-content:center;z-index:99999";
    var inner = document.createElement("div");
    inner.style.cssText = "background:#fff;padding:24px;border-radius:8px;font:16px sans-serif";
    var title = document.createElement("p");
    title.textContent = (o.name || "") + " - pay INR " + (o.amount / 100).toFixed(2) + " (order " + o.order_id + ")";
    inner.appendChild(title);
    function button(label, outcome) {
      var b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.id = "rzp-fake-" + outcome; b.style.margin = "4px";
      b.addEventListener("click", function () {
        fetch(origin + "/_checkout/pay", {method: "POST", headers: {"content-type": "application/json"},
          body: JSON.stringify({key: o.key, order_id: o.order_id, outcome: outcome})})
          .then(function (r) { return r.json(); })
          .then(function (resp) {
            box.remove();
            if (resp.error) { (self.callbacks["payment.failed"] || []).forEach(function (cb) { cb(resp); }); }
            else if (o.handler) { o.handler(resp); }
          });
      });
      inner.appendChild(b);
    }
    button("Pay", "pay");
    button("Fail", "fail");
    var close = document.createElement("button");
    close.type = "button"; close.textContent = "Close"; close.id = "rzp-fake-close";
    close.addEventListener("click", function () {
      box.remove();
      if (o.modal && o.modal.ondismiss) { o.modal.ondismiss(); }
    });
    inner.appendChild(close);
    box.appendChild(inner);
    document.body.appendChild(box);
  };
  window.Razorpay = Razorpay;
})();
"""
