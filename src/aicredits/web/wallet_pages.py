"""The wallet: balance, held, spent this month; top-ups with preset and custom amounts (the fee
and GST shown before paying); Razorpay Checkout or the test checkout page; receipts that print
well; and the admin's list of payments with what refunds could not take back.

Money moves only in services/payments.py; these pages ask it and show what it says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aicredits.domain.payments import format_paise, paise_to_micros
from aicredits.errors import GatewayError, InvalidRequest, NotFound
from aicredits.services.payments import Outcome, PaymentsService
from aicredits.web.admin_pages import render_admin
from aicredits.web.core import actor, admin_only, checked_form, context, redirect, render, signed_in, tz, url
from aicredits.web.formatting import inr

PROVIDER_LABELS = {"razorpay": "Razorpay (UPI, cards, netbanking)", "test": "Test checkout (no money moves)"}
TOPUP_STATES = {"created": "awaiting payment", "paid": "paid", "failed": "failed"}


def month_start_ms(request: Request) -> int:
    """The first moment of this month in the user's time zone, as epoch milliseconds."""
    now = datetime.now(UTC).astimezone(tz(request))
    return int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def paise(value: int) -> str:
    """₹1,234.50 for an amount in paise (the templates' `paise` filter)."""
    return inr(paise_to_micros(value))


def _payments(request: Request) -> PaymentsService:
    payments = context(request).payments
    if payments is None:        # (the gateway always has it; a dashboard built without has no wallet)
        raise HTTPException(404)
    return payments


def _percent(frac: Fraction) -> str:
    value = frac * 100
    return f"{float(value):g}%"


async def _wallet_page(request: Request, status_code: int = 200, **values: object) -> Response:
    user = request.state.user
    values.setdefault("form", {})
    t = _payments(request).terms
    return await render(request, "wallet.html", status_code=status_code,
                        wallet=await _payments(request).wallet(user.id, month_start_ms(request)),
                        topups=await _payments(request).topups(user.id, 20), providers=list(_payments(request).providers),
                        labels=PROVIDER_LABELS, states=TOPUP_STATES, presets=t.presets, terms=t,
                        fee=_percent(t.fee), gst=_percent(t.gst), paise=paise, format_paise=format_paise,
                        **values)


@signed_in
async def wallet(request: Request) -> Response:
    return await _wallet_page(request)


@signed_in
async def start_topup(request: Request) -> Response:
    form = await checked_form(request)
    fields = {k: str(form.get(k) or "").strip() for k in ("amount", "custom", "provider")}
    providers = list(_payments(request).providers)
    provider = fields["provider"] or (providers[0] if len(providers) == 1 else "")
    amount = fields["custom"] or fields["amount"]      # a typed amount wins over the preset choice
    amount = amount.replace(",", "").removeprefix("₹").strip()
    try:
        if not provider:
            raise InvalidRequest("Choose how to pay.")
        started = await _payments(request).start(request.state.user.id, provider, amount)
    except GatewayError as exc:
        return await _wallet_page(request, 400 if exc.status < 500 else 502, error=exc.message, form=fields)
    return redirect(request, "pay_topup", topup_id=started.topup.id)


def _origin(u: str) -> str:
    p = urlsplit(u)
    return f"{p.scheme}://{p.netloc}"


def checkout_csp(checkout_url: str, api_url: str) -> str:
    """The pay page's Content-Security-Policy: the dashboard's, plus Razorpay Checkout's script, its
    frame and the calls it makes (*.razorpay.com for Razorpay's own CDN, else the configured origins)."""
    origins = {_origin(checkout_url), _origin(api_url)}
    host = urlsplit(checkout_url).hostname
    if host and host.endswith("razorpay.com"):
        origins.add("https://*.razorpay.com")
    extra = " ".join(sorted(origins))
    return (f"default-src 'none'; script-src 'self' {extra}; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data: {extra}; connect-src 'self' {extra}; frame-src {extra}; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


async def _pay_page(request: Request, topup_id: str, status_code: int = 200, error: str | None = None) -> Response:
    ctx = context(request)
    user = request.state.user
    try:
        t = await _payments(request).topup(user.id, topup_id)
        checkout = await _payments(request).checkout(user.id, topup_id) if t.status != "paid" else {}
    except NotFound:
        raise HTTPException(404) from None
    except GatewayError as exc:
        checkout, error = {}, error or exc.message
    if t.status == "paid" and error is None:
        return redirect(request, "receipt", topup_id=t.id)
    terms = _payments(request).terms
    response = await render(request, "topup_pay.html", status_code=status_code, t=t, checkout=checkout,
                            error=error or (t.error if t.status == "failed" else None), paise=paise,
                            fee=_percent(terms.fee), gst=_percent(terms.gst), labels=PROVIDER_LABELS)
    if checkout.get("script"):
        p = ctx.settings.payments
        response.headers["content-security-policy"] = checkout_csp(p.razorpay_checkout_url, p.razorpay_base_url)
        # some payment methods (netbanking, wallets) open the bank's page in a popup
        response.headers["cross-origin-opener-policy"] = "same-origin-allow-popups"
    return response


@signed_in
async def pay_topup(request: Request) -> Response:
    return await _pay_page(request, request.path_params["topup_id"])


def _credited_message(outcome: Outcome) -> str:
    t = outcome.topup
    if outcome.status in ("credited", "already_credited") and t is not None and t.status == "paid":
        return f"{inr(t.credit_micros)} added to your wallet."
    return ""


@signed_in
async def razorpay_callback(request: Request) -> Response:
    """Razorpay Checkout's handler posts here (wallet.js): order id, payment id and signature."""
    form = await checked_form(request)
    params = {k: str(form.get(k) or "") for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
    topup_id = str(form.get("topup_id") or "")
    try:
        outcome = await _payments(request).confirm_callback(request.state.user.id, "razorpay", params,
                                                                   actor(request))
    except NotFound:
        raise HTTPException(404) from None
    except GatewayError as exc:
        if not topup_id:
            raise HTTPException(400, exc.message) from None
        return await _pay_page(request, topup_id, 400 if exc.status < 500 else 502, error=exc.message)
    t = outcome.topup
    assert t is not None        # a settled callback's outcome has its top-up
    if t.status == "paid":
        return redirect(request, "receipt", _credited_message(outcome), topup_id=t.id)
    return await _pay_page(request, t.id, error=f"The payment is {outcome.detail or outcome.status}.")


@signed_in
async def test_checkout(request: Request) -> Response:
    """The test provider's checkout page's buttons: succeed or fail."""
    form = await checked_form(request)
    topup_id = request.path_params["topup_id"]
    try:
        outcome = await _payments(request).complete_test(request.state.user.id, topup_id,
                                                                succeed=form.get("outcome") == "pay",
                                                                actor=actor(request))
    except NotFound:
        raise HTTPException(404) from None
    except GatewayError as exc:
        return await _pay_page(request, topup_id, 400, error=exc.message)
    if outcome.topup is not None and outcome.topup.status == "paid":
        return redirect(request, "receipt", _credited_message(outcome), topup_id=topup_id)
    return redirect(request, "pay_topup", "The test payment failed; nothing was added.", topup_id=topup_id)


@signed_in
async def receipt(request: Request) -> Response:
    user = request.state.user
    try:
        r = await _payments(request).receipt(None if user.is_admin else user.id,
                                                    request.path_params["topup_id"])
    except NotFound:
        raise HTTPException(404) from None
    p = context(request).settings.payments
    return await render(request, "receipt.html", r=r, t=r["topup"], pay=r["payment"], refunds=r["refunds"],
                        seller=p.business_name, gstin=p.gstin, paise=paise, labels=PROVIDER_LABELS,
                        fee=_percent(_payments(request).terms.fee),
                        gst=_percent(_payments(request).terms.gst))


@admin_only
async def admin_payments(request: Request) -> Response:
    overview = await _payments(request).admin_overview()
    return await render_admin(request, "admin_payments.html", rows=overview["topups"],
                              shortfall=overview["shortfall_micros"], paise=paise, states=TOPUP_STATES,
                              format_paise=format_paise,
                              receipt_url=lambda tid: url(request, "receipt", topup_id=tid))


routes = [
    Route("/wallet", wallet, methods=["GET"], name="wallet"),
    Route("/wallet/topup", start_topup, methods=["POST"], name="start_topup"),
    Route("/wallet/topups/{topup_id}", pay_topup, methods=["GET"], name="pay_topup"),
    Route("/wallet/topups/{topup_id}/receipt", receipt, methods=["GET"], name="receipt"),
    Route("/wallet/razorpay/callback", razorpay_callback, methods=["POST"], name="razorpay_callback"),
    Route("/wallet/test-checkout/{topup_id}", test_checkout, methods=["POST"], name="test_checkout"),
    Route("/admin/payments", admin_payments, methods=["GET"], name="admin_payments"),
]
