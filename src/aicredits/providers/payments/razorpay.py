"""Razorpay (the Indian default) over its REST API with aiohttp (no SDK at run time).

* Orders API: ``POST /v1/orders`` with HTTP Basic auth (key id, key secret), ``amount`` in paise,
  ``currency`` INR, ``receipt`` (our top-up id, at most 40 characters) and ``notes.topup_id``.
* Payments API: ``GET /v1/payments/{id}`` (amount, status, order), ``POST /v1/payments/{id}/capture``.
* Checkout's success handler returns ``razorpay_order_id``, ``razorpay_payment_id`` and
  ``razorpay_signature`` = hex HMAC-SHA256 of ``order_id + "|" + payment_id`` with the key secret.
* Webhooks: the raw body signed in ``X-Razorpay-Signature`` = hex HMAC-SHA256(body, webhook secret);
  ``X-Razorpay-Event-Id`` names the event (the same on every retry); the envelope is
  ``{"entity": "event", "event", "contains", "payload": {"payment"|"order"|"refund": {"entity": {...}}},
  "created_at"}``.

These are the forms of the official ``razorpay`` Python SDK (``utility.verify_payment_signature``,
``verify_webhook_signature``, ``order.create``); tests/fakes/test_razorpay_upstream.py drives the
fake Razorpay with that SDK, and tests/services/test_payments.py drives it with this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

import aiohttp
import orjson

from aicredits.providers.payments.base import (
    InvalidSignature,
    OrderRequest,
    PaymentFacts,
    PaymentProviderError,
    ProviderOrder,
    RefundFacts,
    WebhookEvent,
)

ID_RE = re.compile(r"^(order|pay|rfnd)_[A-Za-z0-9]{1,40}$")
TIMEOUT_SECONDS = 30


def sign(message: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _valid(signature: str | None, message: bytes, secret: str) -> bool:
    return bool(signature) and hmac.compare_digest(sign(message, secret), str(signature).strip())


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PaymentProviderError(f"Razorpay sent a {what} that is not an integer amount of paise")
    return value


def payment_facts(entity: Mapping) -> PaymentFacts:
    err = entity.get("error_description") or entity.get("error_reason") or entity.get("error_code")
    return PaymentFacts(id=str(entity.get("id") or ""), order_id=entity.get("order_id"),
                        amount_paise=_int(entity.get("amount"), "payment amount"),
                        currency=str(entity.get("currency") or ""), status=str(entity.get("status") or ""),
                        method=entity.get("method"), error=str(err) if err else None)


def refund_facts(entity: Mapping) -> RefundFacts:
    return RefundFacts(id=str(entity.get("id") or ""), payment_id=str(entity.get("payment_id") or ""),
                       amount_paise=_int(entity.get("amount"), "refund amount"),
                       currency=str(entity.get("currency") or ""), status=str(entity.get("status") or ""))


class Razorpay:
    name = "razorpay"

    def __init__(self, *, key_id: str, key_secret: str, webhook_secret: str, base_url: str,
                 checkout_url: str, business_name: str) -> None:
        self._key_id = key_id
        self._key_secret = key_secret
        self._auth = "Basic " + base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        self._webhook_secret = webhook_secret
        self._base = base_url.rstrip("/")
        self.checkout_url = checkout_url
        self._business = business_name
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ REST
    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": self._auth}
        try:
            async with self._session.request(
                    method, self._base + path, data=orjson.dumps(body) if body is not None else None, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PaymentProviderError(f"Razorpay could not be reached ({type(exc).__name__}); "
                                       "try again in a minute") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if 200 <= status < 300 and isinstance(data, dict):
            return data
        err = data.get("error") if isinstance(data, dict) else None
        desc = str(err.get("description") or "") if isinstance(err, dict) else ""
        for secret in (self._key_secret, self._webhook_secret):
            desc = desc.replace(secret, "[redacted]")
        if status in (401, 403):
            raise PaymentProviderError("Razorpay refused our API key: the operator must check "
                                       "AICREDITS_RAZORPAY_KEY_ID and AICREDITS_RAZORPAY_KEY_SECRET")
        raise PaymentProviderError(f"Razorpay answered {status}: {desc[:300] or 'no description'}")

    async def create_order(self, req: OrderRequest) -> ProviderOrder:
        order = await self._call("POST", "/v1/orders", {
            "amount": req.amount_paise, "currency": req.currency, "receipt": req.topup_id,
            "notes": {"topup_id": req.topup_id}})
        if order.get("amount") != req.amount_paise or order.get("currency") != req.currency \
                or not ID_RE.match(str(order.get("id"))):
            raise PaymentProviderError("Razorpay's order does not match the top-up (amount, currency or id)")
        return ProviderOrder(order["id"], order["amount"], order["currency"])

    async def fetch_payment(self, payment_id: str) -> PaymentFacts:
        if not ID_RE.match(payment_id) or not payment_id.startswith("pay_"):
            raise PaymentProviderError("not a Razorpay payment id")
        return payment_facts(await self._call("GET", f"/v1/payments/{payment_id}"))

    async def capture(self, payment_id: str, amount_paise: int, currency: str) -> PaymentFacts:
        if not ID_RE.match(payment_id) or not payment_id.startswith("pay_"):
            raise PaymentProviderError("not a Razorpay payment id")
        return payment_facts(await self._call("POST", f"/v1/payments/{payment_id}/capture",
                                              {"amount": amount_paise, "currency": currency}))

    # ------------------------------------------------------------------ the browser
    def checkout(self, order: ProviderOrder, req: OrderRequest) -> dict:
        """Razorpay Checkout's options (key id is public; the secret never leaves the server)."""
        return {"script": self.checkout_url, "options": {
            "key": self._key_id, "amount": order.amount_paise, "currency": order.currency,
            "order_id": order.id, "name": self._business, "description": f"Credits top-up {req.topup_id}",
            "notes": {"topup_id": req.topup_id}, "prefill": {"email": req.account_email}}}

    def verify_callback(self, params: Mapping[str, str]) -> tuple[str, str]:
        order_id = str(params.get("razorpay_order_id") or "")
        payment_id = str(params.get("razorpay_payment_id") or "")
        if not (ID_RE.match(order_id) and ID_RE.match(payment_id)):
            raise InvalidSignature("the callback has no Razorpay order and payment id")
        if not _valid(params.get("razorpay_signature"), f"{order_id}|{payment_id}".encode(), self._key_secret):
            raise InvalidSignature("the payment signature does not verify")
        return order_id, payment_id

    # ------------------------------------------------------------------ webhooks
    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        if not _valid(headers.get("x-razorpay-signature"), body, self._webhook_secret):
            raise InvalidSignature("X-Razorpay-Signature does not verify with the webhook secret")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise PaymentProviderError("the webhook body is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
            raise PaymentProviderError("the webhook has no payload")
        payload = doc["payload"]

        def entity(name: str) -> dict | None:
            part = payload.get(name)
            ent = part.get("entity") if isinstance(part, dict) else None
            return ent if isinstance(ent, dict) else None

        pay, order, refund = entity("payment"), entity("order"), entity("refund")
        facts = payment_facts(pay) if pay else None
        notes = (order or pay or {}).get("notes")
        return WebhookEvent(
            event=str(doc.get("event") or ""), event_id=headers.get("x-razorpay-event-id"),
            payment=facts, refund=refund_facts(refund) if refund else None,
            order_id=(order or {}).get("id") or (facts.order_id if facts else None),
            order_amount_paise=_int(order["amount"], "order amount") if order else None,
            notes=notes if isinstance(notes, dict) else {})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
