"""What every page uses: the visitor (session cookie -> account), CSRF tokens, rendering,
flash messages and the signed-in / admin-only decorators.

A page is an async function of the request:

    @signed_in
    async def keys_page(request):
        user = request.state.user                 # store.auth.Principal
        ctx = context(request)                    # services: ctx.auth, ctx.keys, ctx.audit, ...
        return await render(request, "keys.html", keys=await ctx.keys.list(user.id))

A POST handler reads its form with `form = await checked_form(request)` (403 without the
form's csrf_token) and answers with `redirect(request, "name")` after a change.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from aicredits.web.app import WebContext

Page = Callable[[Request], Awaitable[Response]]      # a page's handler

from aicredits.services.audit import Actor
from aicredits.store.auth import Principal, SessionRow
from aicredits.web import formatting

SESSION_COOKIE = "aic_session"
CSRF_COOKIE = "aic_csrf"        # anonymous forms (sign-in, sign-up, reset): double-submit token
FLASH_COOKIE = "aic_flash"
COOKIE_PATH = "/dashboard"


class CsrfRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(403, "This form has expired or was sent from another site. "
                              "Go back, reload the page and try again.")


@dataclass
class Visitor:
    token: str | None                  # the session cookie's value
    session: SessionRow | None
    user: Principal | None
    csrf: str                          # what a form must send back as csrf_token
    set_csrf_cookie: bool = False      # an anonymous token minted for this response


def context(request: Request) -> WebContext:
    """The WebContext (web/app.py): settings and the services pages call."""
    return request.app.state.ctx


def client_ip(request: Request) -> str | None:
    if context(request).settings.trust_proxy:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64]
    return request.client.host if request.client else None


def actor(request: Request) -> Actor:
    """The signed-in user (or anonymous) and their IP, for the audit log."""
    user = getattr(request.state, "user", None)
    if user is None:
        return Actor(None, "anonymous", client_ip(request))
    return Actor.of(user, client_ip(request))


async def visitor(request: Request) -> Visitor:
    """Loaded once per request."""
    cached = getattr(request.state, "visitor", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    found = await context(request).auth.session(token) if token else None
    if found is not None and found[1] is not None:
        v = Visitor(token, found[0], found[1], found[0].csrf_token)
    else:
        anon = request.cookies.get(CSRF_COOKIE)
        fresh = not anon or len(anon) > 100
        v = Visitor(token if found else None, found[0] if found else None, None,
                    secrets.token_urlsafe(32) if fresh or not anon else anon, fresh)
    request.state.visitor = v
    request.state.user = v.user
    return v


def secure_cookies(request: Request) -> bool:
    public = context(request).settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=secure_cookies(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure_cookies(request))


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its csrf_token is checked against the visitor's."""
    v = await visitor(request)
    async with request.form(max_files=0, max_fields=50) as form:
        sent = form.get("csrf_token")
        if v.set_csrf_cookie or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), v.csrf.encode()):
            raise CsrfRefused()
        return form


def tz(request: Request) -> ZoneInfo:
    user = getattr(request.state, "user", None)
    return formatting.zone(user.timezone if user else None, context(request).settings.timezone)


def url(request: Request, name: str, **params: object) -> str:
    """The path of a named route ('/dashboard/keys')."""
    return str(request.app.url_path_for(name, **params))


def flash(request: Request, response: Response, message: str) -> Response:
    """A one-line notice shown on the next page."""
    # percent-encoded: a cookie is latin-1, and notices say ₹
    set_cookie(request, response, FLASH_COOKIE, quote(message.replace("\n", " ")[:300]), 60)
    return response


def redirect(request: Request, name: str, message: str | None = None, **params: object) -> Response:
    response = RedirectResponse(url(request, name, **params), status_code=303)
    return flash(request, response, message) if message else response


async def render(request: Request, template: str, status_code: int = 200, **values: object) -> Response:
    """The template with the visitor, CSRF token, navigation, flash notice and formatters."""
    v = await visitor(request)
    ctx = context(request)
    zone = tz(request)
    notice = unquote(request.cookies.get(FLASH_COOKIE) or "") or None
    values.setdefault("error", None)
    response = ctx.templates.TemplateResponse(request, template, {
        "user": v.user, "csrf_token": v.csrf, "nav": ctx.nav(v.user),
        "notice": notice, "settings": ctx.settings, "tz": zone, "url": functools.partial(url, request),
        "when": lambda ms, pattern="d MMM y, HH:mm": formatting.when(ms, zone, pattern),
        "iso": lambda ms: formatting.iso(ms, zone), **values}, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    if v.set_csrf_cookie:
        set_cookie(request, response, CSRF_COOKIE, v.csrf, None)
    if notice:
        clear_cookie(request, response, FLASH_COOKIE)
    return response


def signed_in(handler: Page) -> Page:
    """Pages for signed-in users; others are sent to the sign-in page (and back after)."""
    @functools.wraps(handler)
    async def page(request: Request) -> Response:
        v = await visitor(request)
        if v.user is None:
            if request.method != "GET":
                raise CsrfRefused()
            target = url(request, "signin") + "?next=" + request.url.path
            return RedirectResponse(target, status_code=303)
        return await handler(request)
    return page


def admin_only(handler: Page) -> Page:
    """Pages for admins; anyone else gets 404 (the page does not exist for them)."""
    @functools.wraps(handler)
    async def page(request: Request) -> Response:
        v = await visitor(request)
        if v.user is None or not v.user.is_admin:
            raise HTTPException(404)
        return await handler(request)
    return page
