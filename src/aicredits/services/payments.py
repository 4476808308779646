"""Top-ups: start one (quote, order, checkout), credit its payment exactly once whichever of the
browser callback and the provider's webhooks arrives first or repeats, and take refunds back.

A payment credits the wallet only after the provider vouched for it (a verified signature, and
the provider's own API or signed webhook for its amount and status), and only when its amount
and currency are the top-up's. The store makes it exactly once (store/payments.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from aicredits.domain.payments import (
    CURRENCY,
    Quote,
    TopupRefused,
    TopupTerms,
    format_paise,
    parse_inr,
    quote,
    refund_claim,
    split_debit,
)
from aicredits.errors import InvalidRequest, NotFound, ServiceUnavailable, UpstreamError
from aicredits.providers.payments.base import (
    InvalidSignature,
    OrderRequest,
    PaymentFacts,
    PaymentProvider,
    PaymentProviderError,
    ProviderOrder,
    RefundFacts,
)
from aicredits.providers.payments.testing import LocalCheckout
from aicredits.services.audit import TOPUP, Actor, append
from aicredits.store import accounts as accounts_repo
from aicredits.store import payments as repo
from aicredits.store.db import Conn, Engine
from aicredits.store.payments import Topup

log = logging.getLogger("aicredits.payments")
CREDIT_EVENTS = ("payment.captured", "order.paid", "payment.authorized")
TOPUP_REFUNDED = "topup.refunded"       # audit action of a refund's debit (TOPUP: a credit)


@dataclass(frozen=True)
class Started:
    topup: Topup
    checkout: dict          # what the provider's checkout needs in the browser


@dataclass(frozen=True)
class Outcome:
    status: str             # credited | already_credited | refused | failed | pending | debited | ignored
    detail: str = ""
    topup: Topup | None = None


async def _topup_now(conn: Conn, topup_id: str) -> Topup:
    """A top-up as it is now, read back after this service wrote it (top-ups are never deleted)."""
    t = await repo.topup(conn, topup_id)
    if t is None:
        raise NotFound("No such top-up.")
    return t


class PaymentsService:
    def __init__(self, engine: Engine, providers: Mapping[str, PaymentProvider], terms: TopupTerms) -> None:
        self._engine = engine
        self.providers = dict(providers)
        self.terms = terms

    # ------------------------------------------------------------------ quoting and starting
    def quote(self, amount_inr: object) -> Quote:
        try:
            return quote(parse_inr(amount_inr), self.terms)
        except TopupRefused as exc:
            raise InvalidRequest(str(exc), param="amount") from None

    def _provider(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise InvalidRequest(f"The payment provider {name!r} is not enabled here.", param="provider")
        return provider

    async def start(self, account_id: int, provider_name: str, amount_inr: object) -> Started:
        provider = self._provider(provider_name)
        q = self.quote(amount_inr)
        topup_id = "tu_" + secrets.token_hex(10)
        async with self._engine.begin() as conn:
            account = await accounts_repo.by_id(conn, account_id)
            if account is None:
                raise NotFound("No such account.")
            await repo.create_topup(conn, topup_id=topup_id, account_id=account_id, provider=provider.name,
                                    credit_micros=q.credit_micros, fee_paise=q.fee_paise, gst_paise=q.gst_paise,
                                    amount_paise=q.amount_paise, currency=CURRENCY)
        req = OrderRequest(topup_id, q.amount_paise, CURRENCY, account.email)
        try:
            order = await provider.create_order(req)
        except PaymentProviderError as exc:
            async with self._engine.begin() as conn:
                await repo.mark_failed(conn, topup_id, f"the order could not be created: {exc}")
            raise UpstreamError(f"The payment could not be started: {exc}") from None
        async with self._engine.begin() as conn:
            await repo.set_order(conn, topup_id, order.id)
            topup = await _topup_now(conn, topup_id)
        return Started(topup, provider.checkout(order, req))

    async def checkout(self, account_id: int, topup_id: str) -> dict:
        """What the pay page's checkout needs for an unpaid top-up of this account."""
        t = await self.topup(account_id, topup_id)
        if t.order_id is None:
            raise InvalidRequest("This top-up has no order (it could not be started); start a new one.")
        async with self._engine.connect() as conn:
            account = await accounts_repo.by_id(conn, account_id)
        if account is None:
            raise NotFound("No such account.")
        return self._provider(t.provider).checkout(ProviderOrder(t.order_id, t.amount_paise, t.currency),
                                                   OrderRequest(t.id, t.amount_paise, t.currency, account.email))

    # ------------------------------------------------------------------ reading
    async def wallet(self, account_id: int, month_start_ms: int) -> dict:
        """Balance, held (in-flight calls), available, total added, and charges since `month_start_ms`."""
        async with self._engine.connect() as conn:
            w = await accounts_repo.wallet(conn, account_id)
            spent = await repo.charged_since(conn, account_id, month_start_ms)
        if w is None:
            raise NotFound("No such account.")
        return {"balance": w.balance, "held": w.held, "available": w.available, "total_added": w.total_added,
                "total_spent": w.total_spent, "spent_this_month": spent}

    async def topup(self, account_id: int | None, topup_id: str) -> Topup:
        """A top-up of this account (any account's for None: the admin)."""
        async with self._engine.connect() as conn:
            t = await repo.topup(conn, topup_id)
        if t is None or (account_id is not None and t.account_id != account_id):
            raise NotFound("No such top-up.")
        return t

    async def receipt(self, account_id: int | None, topup_id: str) -> dict:
        t = await self.topup(account_id, topup_id)
        async with self._engine.connect() as conn:
            pay = await repo.payment_of_topup(conn, t.id)
            refunds = await repo.refunds_of(conn, pay["id"]) if pay else []
            account = await accounts_repo.by_id(conn, t.account_id)
        return {"topup": t, "payment": pay, "refunds": refunds, "email": account.email if account else ""}

    async def topups(self, account_id: int, limit: int = 50) -> list[Topup]:
        async with self._engine.connect() as conn:
            return await repo.topups_of(conn, account_id, limit)

    async def admin_overview(self, limit: int = 200) -> dict:
        async with self._engine.connect() as conn:
            return {"topups": await repo.recent_for_admin(conn, limit),
                    "shortfall_micros": await repo.shortfall_total(conn)}

    # ------------------------------------------------------------------ the browser comes back
    async def confirm_callback(self, account_id: int, provider_name: str, params: Mapping[str, str],
                               actor: Actor | None = None) -> Outcome:
        """Razorpay Checkout's handler posted order id, payment id and signature: verify the signature
        with the key secret, then ask Razorpay for the payment's amount and status, then credit."""
        provider = self._provider(provider_name)
        try:
            order_id, payment_id = provider.verify_callback(params)
        except InvalidSignature as exc:
            log.warning("payment callback refused: %s", exc)
            raise InvalidRequest("The payment signature does not verify; nothing was credited.") from None
        async with self._engine.connect() as conn:
            t = await repo.topup_by_order(conn, order_id)
        if t is None or t.account_id != account_id or t.provider != provider.name:
            raise NotFound("No top-up of yours has this order.")
        try:
            facts = await provider.fetch_payment(payment_id)
        except PaymentProviderError as exc:
            raise UpstreamError(f"The payment could not be checked with {provider.name}: {exc}. If it went "
                                "through, your wallet is credited when its webhook arrives.") from None
        outcome = await self._settle(provider, t, facts, "callback", actor)
        if outcome.status == "refused":
            raise InvalidRequest(f"{outcome.detail}; nothing was credited.")
        return outcome

    async def complete_test(self, account_id: int, topup_id: str, *, succeed: bool,
                            actor: Actor | None = None) -> Outcome:
        """The click on the test checkout page."""
        t = await self.topup(account_id, topup_id)
        provider = self._provider(t.provider)
        if t.provider != "test" or t.order_id is None or not isinstance(provider, LocalCheckout):
            raise InvalidRequest("This top-up is not paid on the test checkout page.")
        facts = provider.pay(t.order_id, t.amount_paise, t.currency, succeed=succeed)
        return await self._settle(provider, t, facts, "checkout", actor)

    # ------------------------------------------------------------------ webhooks
    async def handle_webhook(self, provider_name: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        provider = self.providers.get(provider_name)
        if provider is None:
            raise NotFound(f"The payment provider {provider_name!r} is not enabled here.")
        try:
            event = provider.parse_webhook(body, headers)
        except InvalidSignature as exc:
            log.warning("%s webhook refused: %s", provider_name, exc)
            raise InvalidRequest("The webhook signature does not verify; nothing was done.") from None
        except PaymentProviderError as exc:
            raise InvalidRequest(f"The webhook is not understood: {exc}.") from None
        if event.event == "refund.processed" and event.refund is not None:
            return await self._refund(event.refund, Actor.system(provider.name))
        if event.event not in CREDIT_EVENTS + ("payment.failed",) or event.payment is None:
            return Outcome("ignored", f"event {event.event or '?'} needs nothing")
        async with self._engine.connect() as conn:
            t = await repo.topup_by_order(conn, event.order_id) if event.order_id else None
        if t is None or t.provider != provider.name:
            return Outcome("ignored", "not an order of a top-up here")
        return await self._settle(provider, t, event.payment, "webhook", Actor.system(provider.name))

    # ------------------------------------------------------------------ the one way money comes in
    async def _captured(self, provider: PaymentProvider, facts: PaymentFacts) -> PaymentFacts:
        """An authorized payment (an account without automatic capture) is captured first."""
        if facts.status != "authorized":
            return facts
        try:
            return await provider.capture(facts.id, facts.amount_paise, facts.currency)
        except PaymentProviderError:
            try:     # captured meanwhile (automatic capture, or the other of callback/webhook)
                return await provider.fetch_payment(facts.id)
            except PaymentProviderError as exc:
                raise ServiceUnavailable(f"The payment could not be captured: {exc}.") from None

    async def _settle(self, provider: PaymentProvider, t: Topup, facts: PaymentFacts, source: str,
                      actor: Actor | None) -> Outcome:
        if facts.order_id != t.order_id:
            return await self._refuse(t, f"payment {facts.id} belongs to another order")
        if facts.currency != t.currency or facts.amount_paise != t.amount_paise:
            return await self._refuse(t, f"payment {facts.id} of {format_paise(facts.amount_paise)} "
                                         f"{facts.currency} does not match the top-up's "
                                         f"{format_paise(t.amount_paise)} {t.currency}")
        if facts.status == "failed":
            async with self._engine.begin() as conn:
                await repo.mark_failed(conn, t.id, facts.error or "the payment failed")
                t = await _topup_now(conn, t.id)
            return Outcome("failed", facts.error or "the payment failed", t)
        facts = await self._captured(provider, facts)
        if facts.status != "captured":
            return Outcome("pending", f"payment {facts.id} is {facts.status}", t)
        async with self._engine.begin() as conn:
            claimed = await repo.claim_payment(conn, payment_id=facts.id, provider=provider.name, topup_id=t.id,
                                               account_id=t.account_id, amount_paise=facts.amount_paise,
                                               credit_micros=t.credit_micros, method=facts.method, source=source)
            if claimed:
                await accounts_repo.credit(conn, t.account_id, t.credit_micros, kind="topup", call_id=facts.id,
                                           note=f"top-up {t.id} ({provider.name} {facts.id})")
                await repo.mark_paid(conn, t.id, facts.id)
                await append(conn, actor or Actor.system(provider.name), TOPUP, target=t.id, detail={
                    "payment_id": facts.id, "provider": provider.name, "source": source,
                    "credit_micros": t.credit_micros, "amount_paise": t.amount_paise})
        async with self._engine.connect() as conn:
            t = await _topup_now(conn, t.id)
            if not claimed:
                first = await repo.payment_of_topup(conn, t.id)
        if claimed:
            log.info("top-up %s credited %d micro-INR to account %d (%s %s, by %s)", t.id, t.credit_micros,
                     t.account_id, provider.name, facts.id, source)
            return Outcome("credited", "", t)
        if first is not None and first["id"] != facts.id:
            detail = (f"a second payment {facts.id} arrived for top-up {t.id}, already paid by {first['id']}: "
                      "not credited; refund it in the provider's dashboard")
            log.error(detail)
            async with self._engine.begin() as conn:
                await repo.note_error(conn, t.id, detail)
                t = await _topup_now(conn, t.id)
            return Outcome("already_credited", detail, t)
        return Outcome("already_credited", "", t)

    async def _refuse(self, t: Topup, detail: str) -> Outcome:
        log.error("top-up %s refused: %s", t.id, detail)
        async with self._engine.begin() as conn:
            await repo.note_error(conn, t.id, detail)
            t = await _topup_now(conn, t.id)
        return Outcome("refused", detail, t)

    # ------------------------------------------------------------------ refunds
    async def _refund(self, refund: RefundFacts, actor: Actor) -> Outcome:
        """A processed refund takes the refunded share of the credits back, never below zero: what
        the wallet cannot give is recorded (refunds.shortfall_micros) and shown to the admin."""
        async with self._engine.connect() as conn:
            pay = await repo.payment(conn, refund.payment_id)
        if pay is None:
            return Outcome("ignored", f"refund {refund.id} of a payment that credited nothing")
        async with self._engine.begin() as conn:
            if not await repo.claim_refund(conn, refund_id=refund.id, payment_id=pay["id"],
                                           account_id=pay["account_id"], amount_paise=refund.amount_paise):
                return Outcome("already_credited", f"refund {refund.id} was taken already")
            pay = await repo.locked_payment(conn, pay["id"])
            assert pay is not None      # read above; payments are never deleted
            claimed = refund_claim(refund.amount_paise, pay["amount_paise"], pay["credit_micros"],
                                   pay["refund_claimed_micros"])
            balance, held = await repo.locked_wallet(conn, pay["account_id"])
            debited, shortfall = split_debit(claimed, balance, held)
            if debited:
                await repo.debit_refund(conn, account_id=pay["account_id"], amount=debited, refund_id=refund.id,
                                        note=f"refund {refund.id} of payment {pay['id']} "
                                             f"({format_paise(refund.amount_paise)} INR)")
            await repo.finish_refund(conn, refund_id=refund.id, payment_id=pay["id"],
                                     amount_paise=refund.amount_paise, claimed=claimed, debited=debited,
                                     shortfall=shortfall)
            await append(conn, actor, TOPUP_REFUNDED, target=pay["topup_id"], detail={
                "refund_id": refund.id, "payment_id": pay["id"], "amount_paise": refund.amount_paise,
                "debited_micros": debited, "shortfall_micros": shortfall})
        if shortfall:
            log.error("refund %s of payment %s: %d micro-INR could not be debited from account %d (the wallet "
                      "had too little); recorded for the admin", refund.id, pay["id"], shortfall, pay["account_id"])
        return Outcome("debited", f"{debited} micro-INR debited, {shortfall} short")

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()
