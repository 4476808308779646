"""Sign-in with an OpenID Connect provider (Google, Microsoft, Keycloak, any issuer with
discovery): authorization code flow with PKCE (S256) and a nonce; Authlib checks the ID
token's signature against the issuer's JWKS and its iss, aud, exp and nonce. The flow's state
waits in an anonymous server-side session until the provider sends the browser back."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, OAuthError

if TYPE_CHECKING:
    from aicredits.settings import Settings
from joserfc.errors import JoseError
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

log = logging.getLogger("aicredits.web")
FLOW_SECONDS = 600
# what a provider that is down, misconfigured or sends a bad token raises
PROVIDER_ERRORS = (AuthlibBaseError, JoseError, httpx.HTTPError, OSError, ValueError, KeyError)


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        self.issuer = (settings.oidc_issuer or "").rstrip("/")
        self.label = settings.oidc_name
        self.public_url = settings.public_url
        self.app = OAuth().register(
            "oidc", client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256", "timeout": 10})

    async def metadata(self) -> dict:
        meta = await self.app.load_server_metadata()
        if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
            raise OAuthError(description="the provider's discovery document names another issuer")
        return meta

    def callback_url(self, request: Request) -> str:
        if self.public_url:
            return self.public_url.rstrip("/") + url(request, "oidc_callback")
        return str(request.url_for("oidc_callback"))


async def _failed(request: Request, message: str) -> Response:
    return await render(request, "signin.html", status_code=400, error=message, email="", next="")


async def start(request: Request) -> Response:
    await checked_form(request)
    ctx = context(request)
    if ctx.oidc is None:
        raise HTTPException(404)
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
