"""Top-up settings (settings.load_payment_settings): defaults, the environment, the [payments]
table of the config file, and the refusals at start-up rather than at the first top-up."""

from __future__ import annotations

from fractions import Fraction

import pytest

from aicredits.settings import SettingsError, load_settings

RZP = {"AICREDITS_RAZORPAY_KEY_ID": "rzp_test_x", "AICREDITS_RAZORPAY_KEY_SECRET": "s",
       "AICREDITS_RAZORPAY_WEBHOOK_SECRET": "w"}


def test_defaults_enable_nothing():
    p = load_settings({}).payments
    assert p.providers == ()
    assert p.razorpay_checkout_url == "https://checkout.razorpay.com/v1/checkout.js"
    assert p.razorpay_base_url == "https://api.razorpay.com"
    t = p.terms
    assert (t.min_paise, t.max_paise, t.presets, t.fee, t.gst) == (10_000, 10_000_000, (50_000, 100_000, 200_000,
                                                                                          500_000), 0, 0)


def test_razorpay_is_enabled_by_its_key_and_secrets_stay_out_of_repr():
    p = load_settings(RZP).payments
    assert p.providers == ("razorpay",)
    assert (p.razorpay_key_secret, p.razorpay_webhook_secret) == ("s", "w")
    assert "razorpay_key_secret=" not in repr(p) and "razorpay_webhook_secret=" not in repr(p)


def test_environment_settings():
    p = load_settings({**RZP, "AICREDITS_PAYMENT_PROVIDERS": "razorpay, test",
                       "AICREDITS_RAZORPAY_CHECKOUT_URL": "http://127.0.0.1:9/v1/checkout.js",
                       "AICREDITS_RAZORPAY_BASE_URL": "http://127.0.0.1:9/", "AICREDITS_TOPUP_MIN_INR": "50",
                       "AICREDITS_TOPUP_MAX_INR": "20000.50", "AICREDITS_TOPUP_PRESETS": "50,99.99",
                       "AICREDITS_TOPUP_FEE_PERCENT": "2", "AICREDITS_TOPUP_GST_PERCENT": "18",
                       "AICREDITS_BUSINESS_NAME": "Acme AI", "AICREDITS_GSTIN": "29ABCDE1234F1Z5"}).payments
    assert p.providers == ("razorpay", "test")
    assert (p.razorpay_base_url, p.razorpay_checkout_url) == ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/checkout.js")
    t = p.terms
    assert (t.min_paise, t.max_paise, t.presets) == (5_000, 2_000_050, (5_000, 9_999))
    assert (t.fee, t.gst) == (Fraction(2, 100), Fraction(18, 100))
    assert (p.business_name, p.gstin) == ("Acme AI", "29ABCDE1234F1Z5")


def test_the_config_file_gateway_table(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[gateway]\npayment_providers = ["test"]\ntopup_min_inr = "10"\ntopup_presets = ["10", 20]\n'
                   'topup_fee_percent = 1.5\n')
    p = load_settings({"AICREDITS_CONFIG": str(cfg)}).payments
    assert p.providers == ("test",)
    assert (p.terms.min_paise, p.terms.presets, p.terms.fee) == (1_000, (1_000, 2_000), Fraction(15, 1000))


@pytest.mark.parametrize("env, message", [
    ({"AICREDITS_PAYMENT_PROVIDERS": "stripe"}, "unknown payment provider 'stripe'"),
    ({"AICREDITS_PAYMENT_PROVIDERS": "razorpay"}, "needs AICREDITS_RAZORPAY_KEY_ID"),
    ({**RZP, "AICREDITS_RAZORPAY_WEBHOOK_SECRET": ""}, "AICREDITS_RAZORPAY_WEBHOOK_SECRET"),
    ({"AICREDITS_TOPUP_MIN_INR": "0.5"}, "AICREDITS_TOPUP_"),
    ({"AICREDITS_TOPUP_MIN_INR": "500", "AICREDITS_TOPUP_MAX_INR": "100"}, "AICREDITS_TOPUP_"),
    ({"AICREDITS_TOPUP_PRESETS": "50"}, "preset 50.00 INR"),
    ({"AICREDITS_TOPUP_FEE_PERCENT": "abc"}, "percentage"),
    ({"AICREDITS_TOPUP_GST_PERCENT": "101"}, "percentage"),
    ({"AICREDITS_TOPUP_MAX_INR": "1e9"}, "AICREDITS_TOPUP_MAX_INR .* not an amount"),
    ({"AICREDITS_RAZORPAY_CHECKOUT_URL": "checkout.js"}, "AICREDITS_RAZORPAY_CHECKOUT_URL"),
])
def test_bad_settings_are_refused_at_start(env, message):
    with pytest.raises(SettingsError, match=message) as err:
        load_settings(env)
    assert "supersecret" not in str(err.value)


def test_a_bad_secret_is_never_echoed():
    with pytest.raises(SettingsError) as err:
        load_settings({"AICREDITS_RAZORPAY_KEY_SECRET": "supersecret", "AICREDITS_PAYMENT_PROVIDERS": "razorpay"})
    assert "supersecret" not in str(err.value)
