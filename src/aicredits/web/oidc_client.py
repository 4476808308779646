"""The OpenID Connect client (Authlib) behind the sign-in routes of aicredits/web/oidc.py. Its own
module, imported only when an issuer is configured: Authlib and joserfc are a fifth of a second of
every start of a gateway that does not use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc.errors import JoseError
from starlette.requests import Request

from aicredits.web.core import url

if TYPE_CHECKING:
    from aicredits.settings import Settings

# what a provider that is down, misconfigured or sends a bad token raises (Authlib's HTTP client is
# httpx2, whose errors are not httpx's)
PROVIDER_ERRORS = (AuthlibBaseError, JoseError, httpx2.HTTPError, OSError, ValueError, KeyError)


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
