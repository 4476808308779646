"""Payment providers for top-ups: `razorpay` (razorpay.py) and `test` (testing.py), behind the
interface in base.py; `build_payment_providers` picks the enabled ones from settings."""

from __future__ import annotations

from aicredits.providers.payments.base import PaymentProvider
from aicredits.settings import PaymentSettings


def build_payment_providers(s: PaymentSettings) -> dict[str, PaymentProvider]:
    out: dict[str, PaymentProvider] = {}
    for name in s.providers:
        if name == "razorpay":
            from aicredits.providers.payments.razorpay import Razorpay
            if not (s.razorpay_key_id and s.razorpay_key_secret and s.razorpay_webhook_secret):
                raise ValueError("the razorpay payment provider needs its key id, key secret and webhook secret")
            out[name] = Razorpay(key_id=s.razorpay_key_id, key_secret=s.razorpay_key_secret,
                                 webhook_secret=s.razorpay_webhook_secret, base_url=s.razorpay_base_url,
                                 checkout_url=s.razorpay_checkout_url, business_name=s.business_name)
        elif name == "test":
            from aicredits.providers.payments.testing import LocalCheckout
            out[name] = LocalCheckout()
    return out
