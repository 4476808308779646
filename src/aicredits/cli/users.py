"""`aicredits users reset-link|invite|disable|enable`: the dashboard's operator commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Never, TypeVar

import typer

from aicredits.cli.main import DATABASE, _run, users_app

if TYPE_CHECKING:
    from aicredits.services.admin import Admin
    from aicredits.services.auth import Auth
    from aicredits.settings import Settings

T = TypeVar("T")
LOCAL_URL = "http://127.0.0.1:8000"


def _auth_run(fn: Callable[[Auth, Settings], Awaitable[T]]) -> T:
    """fn(auth, settings) with errors shown as `error: ...`, exit 1."""
    from aicredits.services.admin import AdminError
    from aicredits.services.auth import Auth, AuthError

    async def call(admin: Admin, settings: Settings) -> T:
        try:
            return await fn(Auth(admin.engine, signup=settings.signup), settings)
        except AuthError as exc:
            raise AdminError(str(exc)) from None
    return _run(call)


def _base(settings: Settings) -> str:
    return (settings.public_url or LOCAL_URL).rstrip("/")


@users_app.command("reset-link")
def users_reset_link(email: str = typer.Argument(..., help="The account's email."),
                     database: str | None = DATABASE) -> None:
    """Print a one-time password-reset link for the account (valid for an hour). The server's
    address in it is AICREDITS_PUBLIC_URL (http://127.0.0.1:8000 when unset)."""
    from aicredits.services.audit import Actor

    async def fn(auth: Auth, settings: Settings) -> str:
        token = await auth.reset_token(email, Actor.system("cli"))
        if token is None:
            raise_missing(email)
        return f"{_base(settings)}/dashboard/reset/new?token={token}"
    typer.echo(_auth_run(fn))


@users_app.command("invite")
def users_invite(email: str = typer.Argument(..., help="Who may sign up with the link."),
                 database: str | None = DATABASE) -> None:
    """Print a one-time sign-up link for this email (valid for 7 days; for AICREDITS_SIGNUP=invite)."""
    from aicredits.services.audit import Actor

    async def fn(auth: Auth, settings: Settings) -> str:
        token = await auth.invite(email, Actor.system("cli"))
        return f"{_base(settings)}/dashboard/signup?invite={token}&email={email.strip().lower()}"
    typer.echo(_auth_run(fn))


@users_app.command("disable")
def users_disable(email: str = typer.Argument(..., help="The account's email."),
                  database: str | None = DATABASE) -> None:
    """Disable an account: it cannot sign in, its dashboard sessions end, and every running
    gateway refuses its API keys within a second."""
    from aicredits.services.audit import Actor

    _auth_run(lambda auth, s: auth.set_disabled(email, True, Actor.system("cli")))
    typer.echo(f"disabled {email}")


@users_app.command("enable")
def users_enable(email: str = typer.Argument(..., help="The account's email."),
                 database: str | None = DATABASE) -> None:
    """Enable a disabled account again (its keys work again unless revoked)."""
    from aicredits.services.audit import Actor

    _auth_run(lambda auth, s: auth.set_disabled(email, False, Actor.system("cli")))
    typer.echo(f"enabled {email}")


def raise_missing(email: str) -> Never:
    from aicredits.services.admin import AdminError
    raise AdminError(f"no enabled account with email {email}")
