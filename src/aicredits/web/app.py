"""Assembles the dashboard: its services, templates, routes, static files and security
headers, as one ASGI app for the Gateway to hand /dashboard requests to.

To add pages: write a module here with a `routes` list (see home.py), add it to ROUTE_MODULES,
and give it a NAV line if it belongs in the navigation bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from aicredits.ports import Mailer
from aicredits.services.account_keys import AccountKeys
from aicredits.services.audit import Audit
from aicredits.services.auth import Auth
from aicredits.services.history import History
from aicredits.services.operator import Operator
from aicredits.services.overview import Overview
from aicredits.services.payments import PaymentsService
from aicredits.services.runtime import Runtime
from aicredits.settings import Settings
from aicredits.store.auth import Principal
from aicredits.store.db import Engine
from aicredits.web import (
    admin_pages,
    admin_views,
    auth_pages,
    billing_pages,
    formatting,
    home,
    keys_pages,
    oidc,
    usage_pages,
    wallet_pages,
)
from aicredits.web.core import render, visitor
from aicredits.web.security import SecurityHeaders

if TYPE_CHECKING:
    from aicredits.web.oidc_client import OidcClient

log = logging.getLogger("aicredits.web")
HERE = Path(__file__).parent

# the navigation bar: (label, route name, who sees it: "user" or "admin")
NAV = [
    ("Overview", "home", "user"),
    ("API keys", "keys", "user"),
    ("Wallet", "wallet", "user"),
    ("Billing", "billing", "user"),
    ("Usage", "usage", "user"),
    ("Requests", "requests", "user"),
    ("Account", "account", "user"),
    ("Admin", "admin_users", "admin"),       # its pages link each other, payments included
]
ROUTE_MODULES = [home, auth_pages, keys_pages, oidc, wallet_pages, billing_pages, usage_pages, admin_pages,
                 admin_views]


@dataclass
class WebContext:
    """What pages reach through `core.context(request)`."""
    settings: Settings
    engine: Engine
    auth: Auth
    keys: AccountKeys
    audit: Audit
    overview: Overview
    history: History
    operator: Operator
    templates: Jinja2Templates
    oidc: OidcClient | None = None
    mailer: Mailer | None = None    # when SMTP is configured
    runtime: Runtime | None = None  # the catalog and breakers (set by the Gateway)
    payments: PaymentsService | None = None     # the wallet pages
    extra: dict = field(default_factory=dict)

    def nav(self, user: Principal | None) -> list[tuple[str, str]]:
        if user is None:
            return []
        return [(label, name) for label, name, who in NAV if who == "user" or user.is_admin]


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["inr"] = formatting.inr
    env.filters["number"] = formatting.number
    return Jinja2Templates(env=env)


async def not_found(request: Request, exc: Exception) -> Response:
    await visitor(request)
    assert isinstance(exc, HTTPException)      # (its handler's)
    status = exc.status_code
    titles = {403: "Not allowed", 404: "Not found", 405: "Not allowed"}
    message = exc.detail if status == 403 else "There is no such page here."
    return await render(request, "error.html", status_code=status, title=titles.get(status, "Error"), message=message)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("dashboard error on %s %s", request.method, request.url.path, exc_info=exc)
    return await render(request, "error.html", status_code=500, title="Something went wrong",
                  message="The server could not show this page; the error has been logged.")


def build(settings: Settings, engine: Engine, *, on_key_revoked: Callable[[str | None], None] | None = None,
          mailer: Mailer | None = None,
          payments: PaymentsService | None = None) -> tuple[SecurityHeaders, WebContext]:
    """The dashboard app (wrapped in its security headers) and its context. `on_key_revoked(key_id)`
    drops a revoked key from this process's key cache at once."""
    ctx = WebContext(
        settings=settings, engine=engine,
        auth=Auth(engine, signup=settings.signup, session_seconds=settings.session_hours * 3600),
        keys=AccountKeys(engine, on_revoked=on_key_revoked),
        audit=Audit(engine),
        overview=Overview(engine),
        history=History(engine),
        operator=Operator(engine, on_key_revoked=on_key_revoked),
        templates=make_templates(),
        mailer=mailer,
        payments=payments,
        oidc=oidc.make_client(settings),
    )
    routes = [r for module in ROUTE_MODULES for r in module.routes]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=[Mount("/dashboard", routes=routes)],
                    exception_handlers={HTTPException: not_found, Exception: server_error})
    app.state.ctx = ctx
    app.state.headers = SecurityHeaders(app, ctx)
    return app.state.headers, ctx
