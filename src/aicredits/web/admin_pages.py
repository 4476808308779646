"""Admin pages for accounts (admin role; anyone else gets 404): users (search), one user
(wallet, keys, latest entries and calls; disable or enable; grant or debit credits with a
reason; revoke a key), and admin API keys (create, shown once; revoke). Every action is
audited by services/operator.py."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import NoMatchFound, Route

from aicredits.domain.money import inr_to_micros
from aicredits.services.history import UsageFilter
from aicredits.services.operator import NotFound, OperatorError
from aicredits.web.core import actor, admin_only, checked_form, context, redirect, render
from aicredits.web.formatting import inr

PAGE = 50


def _amount(value: object) -> int:
    text = str(value or "").strip().replace(",", "").removeprefix("₹").strip()
    try:
        micros = inr_to_micros(text)
    except (ValueError, TypeError):
        raise OperatorError("The amount is in rupees, like 500 or 99.50.") from None
    if micros <= 0:
        raise OperatorError("The amount must be more than ₹0.")
    return micros


ADMIN_LINKS = [("Users", "admin_users"), ("Top-ups and refunds", "admin_payments"), ("Models", "admin_models"),
               ("Providers", "admin_providers"), ("Audit log", "admin_audit"), ("Admin API keys", "admin_keys")]


def admin_links(request: Request) -> list[tuple[str, str]]:
    """(label, path) of the admin pages this build has (the payments page comes with payments)."""
    out = []
    for label, name in ADMIN_LINKS:
        try:
            out.append((label, str(request.app.url_path_for(name))))
        except NoMatchFound:
            continue
    return out


async def render_admin(request: Request, template: str, status_code: int = 200, **values: object) -> Response:
    return await render(request, template, status_code=status_code, admin_links=admin_links(request), **values)


def _plain_inr(micros: int) -> str:
    """For a flash notice (a cookie: Latin-1 only, so no ₹ sign)."""
    return inr(micros, exact=True).replace("₹", "INR ")


@admin_only
async def users(request: Request) -> Response:
    q = request.query_params.get("q", "").strip()[:320]
    after = request.query_params.get("after", "")
    after_id = int(after) if after.isdigit() and len(after) < 10 else None
    rows = await context(request).operator.users(q, after_id=after_id, limit=PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return await render_admin(request, "admin_users.html", rows=rows, q=q, more=more,
                        next_after=rows[-1]["id"] if more else None, paged=after_id is not None)


async def _user_page(request: Request, account_id: int, status_code: int = 200, **values: object) -> Response:
    ctx = context(request)
    try:
        u = await ctx.operator.user(account_id)
    except NotFound:
        raise HTTPException(404) from None
    entries = await ctx.history.ledger_page(account_id, limit=10)
    calls = await ctx.history.usage_page(account_id, UsageFilter(), limit=10)
    values.setdefault("form", {})
    return await render_admin(request, "admin_user.html", status_code=status_code, u=u, entries=entries.rows,
                        calls=calls.rows, **values)


@admin_only
async def user(request: Request) -> Response:
    return await _user_page(request, request.path_params["user_id"])


async def _disabled(request: Request, disabled: bool) -> Response:
    await checked_form(request)
    account_id = request.path_params["user_id"]
    try:
        changed = await context(request).operator.set_disabled(actor(request), account_id, disabled)
    except NotFound:
        raise HTTPException(404) from None
    except OperatorError as exc:
        return await _user_page(request, account_id, 400, error=str(exc))
    word = "disabled" if disabled else "enabled"
    message = (f"Account {word}" + (": it cannot sign in and its keys are refused within a second." if disabled
                                    else ".")) if changed else f"The account was {word} already."
    return redirect(request, "admin_user", message, user_id=account_id)


@admin_only
async def disable(request: Request) -> Response:
    return await _disabled(request, True)


@admin_only
async def enable(request: Request) -> Response:
    return await _disabled(request, False)


@admin_only
async def credits(request: Request) -> Response:
    form = await checked_form(request)
    account_id = request.path_params["user_id"]
    fields = {k: str(form.get(k) or "") for k in ("kind", "amount", "reason")}
    try:
        balance = await context(request).operator.adjust(actor(request), account_id, fields["kind"],
                                                         _amount(fields["amount"]), fields["reason"])
    except NotFound:
        raise HTTPException(404) from None
    except OperatorError as exc:
        return await _user_page(request, account_id, 400, error=str(exc), form=fields)
    done = "Granted" if fields["kind"] == "grant" else "Debited"
    return redirect(request, "admin_user", f"{done} {_plain_inr(_amount(fields['amount']))}; "
                    f"the balance is now {_plain_inr(balance)}.", user_id=account_id)


@admin_only
async def revoke_user_key(request: Request) -> Response:
    await checked_form(request)
    account_id, key_id = request.path_params["user_id"], request.path_params["key_id"]
    op = context(request).operator
    try:
        key = await op.key(key_id)
        if key["account_id"] != account_id:
            raise NotFound(key_id)
        done = await op.revoke_key(actor(request), key_id)
    except NotFound:
        raise HTTPException(404) from None
    return redirect(request, "admin_user", f"Key {key_id} revoked." if done else f"Key {key_id} was revoked already.",
                    user_id=account_id)


# ---------------------------------------------------------------- admin API keys
async def _keys_page(request: Request, status_code: int = 200, **values: object) -> Response:
    values.setdefault("secret", None)
    values.setdefault("created", None)
    return await render_admin(request, "admin_keys.html", status_code=status_code,
                        keys=await context(request).operator.admin_keys(), **values)


@admin_only
async def admin_keys(request: Request) -> Response:
    return await _keys_page(request)


@admin_only
async def create_admin_key(request: Request) -> Response:
    form = await checked_form(request)
    try:
        secret, key = await context(request).operator.create_admin_key(actor(request), str(form.get("name") or ""))
    except OperatorError as exc:
        return await _keys_page(request, 400, error=str(exc))
    return await _keys_page(request, 201, secret=secret, created=key)     # shown once, never stored


@admin_only
async def revoke_admin_key(request: Request) -> Response:
    await checked_form(request)
    key_id = request.path_params["key_id"]
    try:
        done = await context(request).operator.revoke_admin_key(actor(request), key_id)
    except NotFound:
        raise HTTPException(404) from None
    return redirect(request, "admin_keys", f"Admin key {key_id} revoked: it is refused within a second."
                    if done else f"Admin key {key_id} was revoked already.")


routes = [
    Route("/admin/users", users, methods=["GET"], name="admin_users"),
    Route("/admin/users/{user_id:int}", user, methods=["GET"], name="admin_user"),
    Route("/admin/users/{user_id:int}/disable", disable, methods=["POST"], name="admin_disable"),
    Route("/admin/users/{user_id:int}/enable", enable, methods=["POST"], name="admin_enable"),
    Route("/admin/users/{user_id:int}/credits", credits, methods=["POST"], name="admin_credits"),
    Route("/admin/users/{user_id:int}/keys/{key_id}/revoke", revoke_user_key, methods=["POST"],
          name="admin_revoke_key"),
    Route("/admin/keys", admin_keys, methods=["GET"], name="admin_keys"),
    Route("/admin/keys", create_admin_key, methods=["POST"], name="admin_create_key"),
    Route("/admin/keys/{key_id}/revoke", revoke_admin_key, methods=["POST"], name="admin_revoke_admin_key"),
]
