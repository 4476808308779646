"""The dashboard's settings and its sign-in: sign-up mode, time zone, public URL, sessions,
OpenID Connect, the SMTP server of password-reset mails (docs/dashboard.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from aicredits.settings.types import Seconds, Strict, lower, not_bool, url, zone


class DashboardSettings(Strict):
    signup: Annotated[Literal["open", "invite", "closed"], BeforeValidator(lower)] = "open"
    timezone: Annotated[str, BeforeValidator(zone)] = "Asia/Kolkata"   # dates on the dashboard
    public_url: Annotated[str | None, BeforeValidator(url)] = None     # links in mails, Secure cookies
    session_hours: Seconds = 24 * 7          # a dashboard session expires this long after sign-in
    oidc_issuer: str | None = None           # OpenID Connect sign-in (any issuer with discovery)
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(default=None, repr=False)
    oidc_name: str = "single sign-on"        # the button says "Sign in with <oidc_name>"
    smtp_host: str | None = None             # password-reset mails; without it, `users reset-link`
    smtp_port: Annotated[int, BeforeValidator(not_bool), Field(ge=1, le=65535)] = 587
    smtp_user: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_tls: Annotated[Literal["starttls", "ssl", "none"], BeforeValidator(lower)] = "starttls"
    trust_proxy: bool = False                # client IP from X-Forwarded-For (behind your own proxy only)

    def check_dashboard(self) -> None:
        """Settings that go in pairs or threes (GatewaySettings runs every idea's check)."""
        oidc = (self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret)
        if any(oidc) and not all(oidc):
            raise ValueError("OpenID Connect needs AICREDITS_OIDC_ISSUER, AICREDITS_OIDC_CLIENT_ID and "
                             "AICREDITS_OIDC_CLIENT_SECRET together")
        if self.smtp_host and not self.smtp_from:
            raise ValueError("AICREDITS_SMTP_HOST needs AICREDITS_SMTP_FROM (the sender address)")
