"""Sign-in with an OpenID Connect provider (Google, Microsoft, Keycloak, any issuer with
discovery): authorization code flow with PKCE (S256) and a nonce; Authlib checks the ID
token's signature against the issuer's JWKS and its iss, aud, exp and nonce. The flow's state
waits in an anonymous server-side session until the provider sends the browser back. The client
(aicredits/web/oidc_client.py, Authlib) is loaded only when an issuer is configured."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from aicredits.services.auth import AuthError
from aicredits.web.core import (
    SESSION_COOKIE,
    checked_form,
    clear_cookie,
    client_ip,
    context,
    render,
    set_cookie,
    url,
    visitor,
)

if TYPE_CHECKING:
    from aicredits.settings import Settings
    from aicredits.web.oidc_client import OidcClient

log = logging.getLogger("aicredits.web")
FLOW_SECONDS = 600


def make_client(settings: Settings) -> OidcClient | None:
    """The client when an issuer is configured (None otherwise, and Authlib is not imported)."""
    if not settings.oidc_issuer:
        return None
    from aicredits.web.oidc_client import OidcClient
    return OidcClient(settings)


async def _failed(request: Request, message: str) -> Response:
    return await render(request, "signin.html", status_code=400, error=message, email="", next="")


async def start(request: Request) -> Response:
    await checked_form(request)
    ctx = context(request)
    if ctx.oidc is None:
        raise HTTPException(404)
    from aicredits.web.oidc_client import PROVIDER_ERRORS  # loaded with the client (make_client)
    try:
        meta = await ctx.oidc.metadata()
        request.scope["session"] = {}
        redirect = await ctx.oidc.app.authorize_redirect(request, ctx.oidc.callback_url(request))
    except PROVIDER_ERRORS as exc:
        log.warning("OpenID Connect provider unavailable: %s", exc)
        return await _failed(request, f"{ctx.oidc.label} is not answering; try again, or sign in with a password.")
    request.app.state.headers.refresh(meta.get("authorization_endpoint"))
    opened = await ctx.auth.open_anonymous(client_ip(request), request.headers.get("user-agent"),
                                           request.scope["session"])
    set_cookie(request, redirect, SESSION_COOKIE, opened.token, FLOW_SECONDS)
    return redirect


async def callback(request: Request) -> Response:
    ctx = context(request)
    if ctx.oidc is None:
        raise HTTPException(404)
    from aicredits.web.oidc_client import PROVIDER_ERRORS  # loaded with the client (make_client)
    v = await visitor(request)
    if v.session is None or v.token is None or v.user is not None:
        return await _failed(request, "This sign-in took too long or began in another browser; try again.")
    request.scope["session"] = json.loads(v.session.data or "{}")
    try:
        token = await ctx.oidc.app.authorize_access_token(request)
    except PROVIDER_ERRORS as exc:
        log.warning("OpenID Connect sign-in failed: %s", exc)
        await ctx.auth.end_session(v.token)
        return await _failed(request, f"Sign-in with {ctx.oidc.label} failed; try again.")
    await ctx.auth.end_session(v.token)
    try:
        opened = await ctx.auth.oidc_sign_in(ctx.oidc.issuer, dict(token.get("userinfo") or {}),
                                             client_ip(request), request.headers.get("user-agent"))
    except AuthError as exc:
        response = await _failed(request, str(exc))
        clear_cookie(request, response, SESSION_COOKIE)
        return response
    response = RedirectResponse(url(request, "home"), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, opened.token, int(ctx.settings.session_hours * 3600))
    return response


routes = [
    Route("/oidc/start", start, methods=["POST"], name="oidc_start"),
    Route("/oidc/callback", callback, methods=["GET"], name="oidc_callback"),
]
