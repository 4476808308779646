"""The `test` payment provider: our own checkout page (/dashboard/wallet/test-checkout/<top-up>)
that succeeds or fails on a click, for demos and tests. No money moves: an operator who enables
it (AICREDITS_PAYMENT_PROVIDERS=test) lets every signed-in user add credits for free."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from aicredits.providers.payments.base import (
    InvalidSignature,
    OrderRequest,
    PaymentFacts,
    PaymentProviderError,
    ProviderOrder,
    WebhookEvent,
)


class LocalCheckout:
    name = "test"

    async def create_order(self, req: OrderRequest) -> ProviderOrder:
        return ProviderOrder("test_order_" + secrets.token_hex(8), req.amount_paise, req.currency)

    def checkout(self, order: ProviderOrder, req: OrderRequest) -> dict:
        return {"page": f"test-checkout/{req.topup_id}"}

    def pay(self, order_id: str, amount_paise: int, currency: str, *, succeed: bool) -> PaymentFacts:
        """The click on the test checkout page: a captured payment of the order's amount, or a failure."""
        return PaymentFacts(id="test_pay_" + secrets.token_hex(8), order_id=order_id, amount_paise=amount_paise,
                            currency=currency, status="captured" if succeed else "failed", method="test",
                            error=None if succeed else "The payment was declined on the test checkout page.")

    def verify_callback(self, params: Mapping[str, str]) -> tuple[str, str]:
        raise InvalidSignature("the test provider has no browser callback")

    async def fetch_payment(self, payment_id: str) -> PaymentFacts:
        raise PaymentProviderError("the test provider keeps no payments")

    async def capture(self, payment_id: str, amount_paise: int, currency: str) -> PaymentFacts:
        raise PaymentProviderError("the test provider captures on the click")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise InvalidSignature("the test provider sends no webhooks")

    async def close(self) -> None:
        return None
