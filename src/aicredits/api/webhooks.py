"""POST /webhooks/razorpay: Razorpay's webhooks. No session, no CSRF, no API key: the signature
(X-Razorpay-Signature over the raw body, with the webhook secret) is the authentication, checked in
services/payments.py before anything in the body is believed.

Answers 200 `{"status": ...}` to every event whose signature verifies, whatever it led to
(credited, already_credited, refused, failed, pending, debited, ignored), so Razorpay does not
retry what will never change; 400 when the signature does not verify; 404 when Razorpay is not
enabled; 5xx only when we failed (then Razorpay's retries are wanted).
"""

from __future__ import annotations

from aicredits.api.http import Handler, Request, Send, send_json
from aicredits.services.payments import PaymentsService

MAX_WEBHOOK_BYTES = 1024 * 1024


def razorpay(payments: PaymentsService) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        body = await req.body(MAX_WEBHOOK_BYTES)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers.items()}
        outcome = await payments.handle_webhook("razorpay", body, headers)
        await send_json(send, 200, {"status": outcome.status})
    return handle
