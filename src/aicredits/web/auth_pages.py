"""Sign-up, sign-in, sign-out, the account page (password, time zone) and password reset."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from aicredits.services.auth import AuthError, Throttled
from aicredits.web.core import (
    SESSION_COOKIE,
    CsrfRefused,
    actor,
    checked_form,
    clear_cookie,
    client_ip,
    context,
    redirect,
    render,
    set_cookie,
    signed_in,
    url,
    visitor,
)

log = logging.getLogger("aicredits.web")
_mail_tasks: set[asyncio.Task] = set()
RESET_MAIL = """Someone (we hope you) asked to reset the password of your aicredits account.

Open this link within an hour to choose a new password (it works once):

{link}

If you did not ask for this, ignore this mail: your password stays as it is.
"""


def _next(value: str | None) -> str:
    """Only a dashboard path (no open redirect)."""
    if value and value.startswith("/dashboard") and not value.startswith("//") and "\\" not in value:
        return value
    return ""


def _signed_in_response(request: Request, token: str, to: str) -> Response:
    response = RedirectResponse(to, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, int(context(request).settings.session_hours * 3600))
    return response


async def signin(request: Request) -> Response:
    v = await visitor(request)
    ctx = context(request)
    if request.method == "GET":
        if v.user is not None:
            return RedirectResponse(url(request, "home"), status_code=303)
        return await render(request, "signin.html", email="", next=_next(request.query_params.get("next")))
    form = await checked_form(request)
    email, nxt = str(form.get("email") or ""), _next(str(form.get("next") or ""))
    try:
        opened = await ctx.auth.sign_in(email, str(form.get("password") or ""), client_ip(request),
                                        request.headers.get("user-agent"))
    except AuthError as exc:
        status = 429 if isinstance(exc, Throttled) else 400
        response = await render(request, "signin.html", status_code=status, error=str(exc), email=email, next=nxt)
        if isinstance(exc, Throttled):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response
    if v.token:      # an anonymous session (an abandoned provider sign-in) ends here
        await ctx.auth.end_session(v.token)
    return _signed_in_response(request, opened.token, nxt or url(request, "home"))


async def signup(request: Request) -> Response:
    ctx = context(request)
    mode = ctx.settings.signup
    invite = request.query_params.get("invite", "")
    if request.method == "GET":
        return await render(request, "signup.html", mode=mode, invite=invite, email=request.query_params.get("email", ""),
                      name="")
    form = await checked_form(request)
    email, name, invite = (str(form.get(k) or "") for k in ("email", "name", "invite"))
    try:
        opened = await ctx.auth.sign_up(email, str(form.get("password") or ""), name=name, invite=invite or None,
                                        ip=client_ip(request), user_agent=request.headers.get("user-agent"))
    except AuthError as exc:
        return await render(request, "signup.html", status_code=400, error=str(exc), mode=mode, invite=invite,
                      email=email, name=name)
    return _signed_in_response(request, opened.token, url(request, "home"))


@signed_in
async def signout(request: Request) -> Response:
    await checked_form(request)
    v = await visitor(request)
    if v.token is None or v.user is None:      # (signed_in: both are set)
        raise CsrfRefused()
    await context(request).auth.sign_out(v.token, v.user, client_ip(request))
    response = redirect(request, "signin", "You are signed out.")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@signed_in
async def account(request: Request) -> Response:
    return await render(request, "account.html")


@signed_in
async def change_password(request: Request) -> Response:
    form = await checked_form(request)
    v = await visitor(request)
    if v.token is None or v.user is None:      # (signed_in: both are set)
        raise CsrfRefused()
    new, again = str(form.get("new_password") or ""), str(form.get("new_password_again") or "")
    try:
        if new != again:
            raise AuthError("The two new passwords differ.")
        await context(request).auth.change_password(v.user, str(form.get("current_password") or ""), new,
                                                    session_token=v.token, ip=client_ip(request))
    except AuthError as exc:
        return await render(request, "account.html", status_code=400, error=str(exc))
    return redirect(request, "account", "Password changed. Your other sessions were signed out.")


@signed_in
async def set_timezone(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("timezone") or "").strip()
    try:
        if name:
            ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return await render(request, "account.html", status_code=400,
                      error=f"{name!r} is not a time zone name (for example Asia/Kolkata).")
    await context(request).auth.set_timezone(request.state.user, name or None)
    return redirect(request, "account", "Time zone saved.")


async def reset_request(request: Request) -> Response:
    """Ask for a reset link by mail (when SMTP is configured)."""
    ctx = context(request)
    await visitor(request)
    if request.method == "GET":
        return await render(request, "reset_request.html", sent=False)
    form = await checked_form(request)
    if ctx.mailer is not None:
        token = await ctx.auth.reset_token(str(form.get("email") or ""), actor(request))
        if token is not None:
            task = asyncio.create_task(ctx.mailer.send(
                str(form.get("email")).strip().lower(), "Reset your aicredits password",
                RESET_MAIL.format(link=reset_link(request, token))))
            _mail_tasks.add(task)
            task.add_done_callback(_mail_tasks.discard)
    return await render(request, "reset_request.html", sent=True)


def reset_link(request: Request, token: str) -> str:
    ctx = context(request)
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}{url(request, 'reset_password')}?token={token}"


async def reset_password(request: Request) -> Response:
    ctx = context(request)
    await visitor(request)
    if request.method == "GET":
        token = request.query_params.get("token", "")
        valid = await ctx.auth.reset_token_valid(token)
        return await render(request, "reset_password.html", status_code=200 if valid else 400, token=token, valid=valid)
    form = await checked_form(request)
    token, new = str(form.get("token") or ""), str(form.get("new_password") or "")
    try:
        if new != str(form.get("new_password_again") or ""):
            raise AuthError("The two new passwords differ.")
        await ctx.auth.reset_password(token, new, client_ip(request))
    except AuthError as exc:
        return await render(request, "reset_password.html", status_code=400, token=token, valid=True, error=str(exc))
    return redirect(request, "signin", "Password set: sign in with it.")


routes = [
    Route("/signin", signin, methods=["GET", "POST"], name="signin"),
    Route("/signup", signup, methods=["GET", "POST"], name="signup"),
    Route("/signout", signout, methods=["POST"], name="signout"),
    Route("/account", account, methods=["GET"], name="account"),
    Route("/account/password", change_password, methods=["POST"], name="change_password"),
    Route("/account/timezone", set_timezone, methods=["POST"], name="set_timezone"),
    Route("/reset", reset_request, methods=["GET", "POST"], name="reset_request"),
    Route("/reset/new", reset_password, methods=["GET", "POST"], name="reset_password"),
]
