"""The payment-provider interface the top-up service (services/payments.py) uses.

A provider creates an order for a top-up, says what the browser's checkout needs, verifies
what comes back from the browser and from its webhooks (signatures, before anything is
believed), and reports the facts of a payment (amount, status). It never touches a wallet:
crediting, once per payment, is the service's and the store's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class PaymentProviderError(Exception):
    """The provider could not be reached or refused a request (message safe to show: no secret)."""


class InvalidSignature(Exception):
    """A callback or webhook whose signature does not verify: nothing in it is believed."""


@dataclass(frozen=True)
class OrderRequest:
    topup_id: str
    amount_paise: int
    currency: str
    account_email: str


@dataclass(frozen=True)
class ProviderOrder:
    id: str
    amount_paise: int
    currency: str


@dataclass(frozen=True)
class PaymentFacts:
    """A payment as the provider reports it (after a signature or its own API vouched for it)."""

    id: str
    order_id: str | None
    amount_paise: int
    currency: str
    status: str                    # created | authorized | captured | failed | refunded
    method: str | None = None
    error: str | None = None       # why it failed, as the provider says


@dataclass(frozen=True)
class RefundFacts:
    id: str
    payment_id: str
    amount_paise: int
    currency: str
    status: str                    # pending | processed | failed


@dataclass(frozen=True)
class WebhookEvent:
    event: str                     # e.g. payment.captured, order.paid, payment.failed, refund.processed
    event_id: str | None
    payment: PaymentFacts | None = None
    refund: RefundFacts | None = None
    order_id: str | None = None
    order_amount_paise: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


class PaymentProvider(Protocol):
    name: str                      # "razorpay" | "test": stored on every top-up

    async def create_order(self, req: OrderRequest) -> ProviderOrder:
        """An order for the top-up's full amount (fee and GST included)."""

    def checkout(self, order: ProviderOrder, req: OrderRequest) -> dict:
        """What the wallet page's checkout needs (public values only: never a secret)."""

    def verify_callback(self, params: Mapping[str, str]) -> tuple[str, str]:
        """(order id, payment id) from the browser's callback, or InvalidSignature."""

    async def fetch_payment(self, payment_id: str) -> PaymentFacts: ...

    async def capture(self, payment_id: str, amount_paise: int, currency: str) -> PaymentFacts:
        """Capture an authorized payment (accounts without automatic capture)."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """The event of a webhook whose signature verifies, or InvalidSignature."""

    async def close(self) -> None: ...
