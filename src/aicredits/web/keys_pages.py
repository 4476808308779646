"""API keys: list, create (the secret shown once, with a copy button), revoke. A key id that
is not the signed-in account's gives 404, in the URL or in a form."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aicredits.domain.keys import parse_expiry, parse_model_patterns
from aicredits.domain.money import inr_to_micros
from aicredits.services.account_keys import KeyInputError, KeyNotFound
from aicredits.web.core import actor, checked_form, context, redirect, render, signed_in


def _optional_int(value: object, label: str) -> int | None:
    text = str(value or "").strip().replace(",", "")
    if not text:
        return None
    if not text.isdigit():
        raise KeyInputError(f"{label} must be a whole number (leave it empty for no limit).")
    return int(text)


def _optional_inr(value: object) -> int | None:
    text = str(value or "").strip().replace(",", "").removeprefix("₹").strip()
    if not text:
        return None
    try:
        micros = inr_to_micros(text)
    except (ValueError, TypeError):
        raise KeyInputError("The credit limit is an amount in rupees, like 500 or 99.50.") from None
    if micros % 10_000:
        raise KeyInputError("The credit limit takes at most 2 decimal places (paise).")
    return micros


EXPIRY_CHOICES = ("", "7d", "30d", "90d")      # the select's values; "" is never


def _expiry(choice: str, on_date: str) -> int | None:
    """The select (a duration from now) or a date (its start, UTC); both given is a mistake."""
    choice, on_date = choice.strip(), on_date.strip()
    if choice and on_date:
        raise KeyInputError("Choose an expiry period or a date, not both.")
    try:
        return parse_expiry(choice or on_date, int(time.time() * 1000))
    except ValueError as exc:
        raise KeyInputError(f"Expiry: {exc}.") from None


def _models(text: str) -> tuple[str, ...] | None:
    try:
        return parse_model_patterns(text)
    except ValueError as exc:
        raise KeyInputError(f"Models: {exc}.") from None


async def _page(request: Request, status_code: int = 200, **values: object) -> Response:
    keys = await context(request).keys.list(request.state.user.id)
    values.setdefault("form", {})
    values.setdefault("secret", None)
    values.setdefault("created", None)
    values.setdefault("expiry_choices", EXPIRY_CHOICES)
    return await render(request, "keys.html", status_code=status_code, keys=keys, **values)


@signed_in
async def keys_page(request: Request) -> Response:
    return await _page(request)


@signed_in
async def create_key(request: Request) -> Response:
    form = await checked_form(request)
    fields = {k: str(form.get(k) or "") for k in ("name", "limit", "rpm", "tpm", "expires", "expires_on", "models")}
    try:
        secret, key = await context(request).keys.create(
            actor(request), name=fields["name"], limit=_optional_inr(fields["limit"]),
            rpm=_optional_int(fields["rpm"], "Requests per minute"), tpm=_optional_int(fields["tpm"], "Tokens per minute"),
            expires_at=_expiry(fields["expires"], fields["expires_on"]), models=_models(fields["models"]))
    except KeyInputError as exc:
        return await _page(request, 400, error=str(exc), form=fields)
    # the one time the secret is shown: this response is not stored (no-store) nor redirected to
    return await _page(request, 201, secret=secret, created=key)


@signed_in
async def revoke_key(request: Request) -> Response:
    form = await checked_form(request)
    key_id = request.path_params["key_id"]
    if form.get("key_id") not in (None, key_id):
        raise HTTPException(404)
    try:
        done = await context(request).keys.revoke(actor(request), key_id)
    except KeyNotFound:
        raise HTTPException(404) from None
    return redirect(request, "keys", f"Key {key_id} revoked: calls with it are refused within a second."
                    if done else f"Key {key_id} was revoked already.")


routes = [
    Route("/keys", keys_page, methods=["GET"], name="keys"),
    Route("/keys", create_key, methods=["POST"], name="create_key"),
    Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"], name="revoke_key"),
]
