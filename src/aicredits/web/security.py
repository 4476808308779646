"""Security headers on every dashboard response: a strict Content-Security-Policy (our own
scripts, styles and images only; no framing), nosniff, no referrer outside the site."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from aicredits.web.app import WebContext


def _origin(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class SecurityHeaders:
    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app = app
        self.ctx = ctx
        self._static = self._headers()

    def _headers(self) -> list[tuple[bytes, bytes]]:
        # a form may lead to the OpenID Connect provider (the sign-in button posts, then redirects there)
        form_action = " ".join(filter(None, ["'self'", _origin(self.ctx.settings.oidc_issuer)]))
        csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'")
        return [(b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"),
                (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                (b"cross-origin-opener-policy", b"same-origin")]

    def refresh(self, extra_form_origin: str | None = None) -> None:
        """Allow one more form-action origin (the provider's authorization endpoint, once known)."""
        origin = _origin(extra_form_origin)
        headers = self._headers()
        if origin and origin not in headers[0][1].decode():
            csp = headers[0][1].decode().replace("form-action 'self'", f"form-action 'self' {origin}")
            headers[0] = (b"content-security-policy", csp.encode())
        self._static = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # a page that sets one of these itself (the pay page: the checkout's origins) keeps its own
                own = {k.lower() for k, _ in headers}
                message["headers"] = headers + [h for h in self._static if h[0] not in own]
            await send(message)
        await self.app(scope, receive, with_headers)
