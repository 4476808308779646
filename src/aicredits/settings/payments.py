"""Top-up settings (docs/payments.md): the payment providers, Razorpay's keys and URLs, the
amounts in rupees and the fee and GST percentages; PaymentSettings is the view the payment
providers and the wallet pages use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BeforeValidator, Field

from aicredits.domain.payments import TopupTerms, parse_inr, percent
from aicredits.settings.types import Strict, not_bool, url

PAYMENT_PROVIDERS = ("razorpay", "test")


def _names(value: object) -> object:
    """'razorpay, test' or ["razorpay", "test"] -> ("razorpay", "test") (lower case, no repeats)."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError("must be names separated by commas")
    names = tuple(dict.fromkeys(x.strip().lower() for x in items if x.strip()))
    unknown = [n for n in names if n not in PAYMENT_PROVIDERS]
    if unknown:
        raise ValueError(f"unknown payment provider {unknown[0]!r} (known: {', '.join(PAYMENT_PROVIDERS)})")
    return names


def _inr(value: object) -> str:
    not_bool(value)
    parse_inr(value)             # TopupRefused (a ValueError) names what is wrong
    return str(value).strip()


def _inr_list(value: object) -> object:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be amounts separated by commas")  # noqa: TRY004 - pydantic wants ValueError
    return tuple(_inr(x) for x in items if str(x).strip())


def _percent(value: object) -> str:
    not_bool(value)
    percent(value)               # 0..100
    return str(value).strip()


@dataclass(frozen=True)
class PaymentSettings:
    """The top-up settings as the payment providers and the wallet pages use them (built from
    GatewaySettings.payments; docs/payments.md)."""

    providers: tuple[str, ...] = ()            # enabled, in the wallet page's order
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = field(default=None, repr=False)
    razorpay_webhook_secret: str | None = field(default=None, repr=False)
    razorpay_base_url: str = "https://api.razorpay.com"
    razorpay_checkout_url: str = "https://checkout.razorpay.com/v1/checkout.js"
    min_inr: str = "100"
    max_inr: str = "100000"
    presets: tuple[str, ...] = ("500", "1000", "2000", "5000")
    fee_percent: str = "0"
    gst_percent: str = "0"
    business_name: str = "aicredits"
    gstin: str | None = None

    @property
    def terms(self) -> TopupTerms:
        return TopupTerms(parse_inr(self.min_inr), parse_inr(self.max_inr),
                          tuple(parse_inr(p) for p in self.presets),
                          percent(self.fee_percent), percent(self.gst_percent))


class PaymentFields(Strict):
    """The AICREDITS_* top-up variables; amounts in rupees, percentages of 100."""
    payment_providers: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = None  # default: razorpay if keyed
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = Field(default=None, repr=False)
    razorpay_webhook_secret: str | None = Field(default=None, repr=False)
    razorpay_base_url: Annotated[str, BeforeValidator(url)] = "https://api.razorpay.com"
    razorpay_checkout_url: Annotated[str, BeforeValidator(url)] = "https://checkout.razorpay.com/v1/checkout.js"
    topup_min_inr: Annotated[str, BeforeValidator(_inr)] = "100"
    topup_max_inr: Annotated[str, BeforeValidator(_inr)] = "100000"
    topup_presets: Annotated[tuple[str, ...], BeforeValidator(_inr_list)] = ("500", "1000", "2000", "5000")
    topup_fee_percent: Annotated[str, BeforeValidator(_percent)] = "0"    # of the credits, paid on top
    topup_gst_percent: Annotated[str, BeforeValidator(_percent)] = "0"    # of credits + fee, paid on top
    business_name: str = "aicredits"         # the seller on receipts and in Razorpay Checkout
    gstin: str | None = None                 # printed on receipts when set

    @property
    def payments(self) -> PaymentSettings:
        providers = self.payment_providers
        if providers is None:
            providers = ("razorpay",) if self.razorpay_key_id else ()
        return PaymentSettings(
            providers, self.razorpay_key_id, self.razorpay_key_secret, self.razorpay_webhook_secret,
            self.razorpay_base_url.rstrip("/"), self.razorpay_checkout_url, self.topup_min_inr, self.topup_max_inr,
            self.topup_presets, self.topup_fee_percent, self.topup_gst_percent, self.business_name, self.gstin)

    def check_payments(self) -> None:
        """Razorpay's three keys together; the amounts within each other (GatewaySettings runs
        every idea's check)."""
        p = self.payments
        if "razorpay" in p.providers and not (p.razorpay_key_id and p.razorpay_key_secret
                                              and p.razorpay_webhook_secret):
            raise ValueError("the razorpay payment provider needs AICREDITS_RAZORPAY_KEY_ID, "
                             "AICREDITS_RAZORPAY_KEY_SECRET and AICREDITS_RAZORPAY_WEBHOOK_SECRET")
        try:
            p.terms  # noqa: B018 - min <= max, presets within them: checked now, not on the first top-up
        except ValueError as exc:
            raise ValueError(f"top-up settings (AICREDITS_TOPUP_*): {exc}") from None
