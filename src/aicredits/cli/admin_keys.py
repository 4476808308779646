"""`aicredits admin-keys create|list|revoke`: admin API keys (`sk-admin-` + 64 hex) for the
/admin/api endpoints. A key acts with the rights of the admin account that owns it, while that
account is an enabled admin; the secret is printed once and stored only as a hash."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import typer

from aicredits.cli.database import DATABASE, database_option
from aicredits.cli.output import print_json, table

if TYPE_CHECKING:
    from aicredits.services.operator import Operator

T = TypeVar("T")

app = typer.Typer(help="Admin API keys for /admin/api (sk-admin-...): create, list, revoke.", no_args_is_help=True)


def _run(fn: Callable[[Operator], Awaitable[T]]) -> T:
    """fn(operator) against the migrated database (docs/configuration.md, "Which database")."""
    from aicredits.cli.database import explain, load, require_existing
    from aicredits.services.operator import NotFound, Operator, OperatorError
    from aicredits.store.db import make_engine, migrate

    settings = load(database_option())

    async def go() -> T:
        require_existing(settings)
        engine = make_engine(settings.database_url, settings.sqlite_busy_timeout)
        try:
            await migrate(engine, settings.database_url)
            return await fn(Operator(engine))
        finally:
            await engine.dispose()
    try:
        return asyncio.run(go())
    except (OperatorError, NotFound) as exc:
        typer.echo(f"error: {exc}" if isinstance(exc, OperatorError) else f"error: no admin key {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        line = explain(exc, settings)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        raise typer.Exit(1) from None


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@app.command("create")
def create(email: str = typer.Option(..., help="The admin account that owns the key (see `users create --admin`)."),
           name: str = typer.Option("admin API", help="A label for the key."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
           database: str | None = DATABASE) -> None:
    """Create an admin API key (shown once) for scripts calling /admin/api."""
    from aicredits.services.audit import Actor
    secret, key = _run(lambda op: op.create_admin_key(Actor.system("cli"), name, owner_email=email))
    if as_json:
        print_json({"key": secret, "id": key["id"], "name": key["name"], "owner": email})
        return
    typer.echo(f"key:   {secret}")
    typer.echo(f"id:    {key['id']}")
    typer.echo(f"owner: {email}")
    typer.echo("Store the key now: it is not shown again. It works on /admin/api only.")


@app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json"),
              database: str | None = DATABASE) -> None:
    """List admin API keys (never their secrets)."""
    rows = _run(lambda op: op.admin_keys())
    if as_json:
        print_json([{"id": r["id"], "name": r["name"], "display": r["display"], "owner": r["email"],
                     "created_at": r["created_at"], "last_used_at": r["last_used_at"],
                     "revoked": r["revoked_at"] is not None} for r in rows])
        return
    table(["id", "name", "key", "owner", "created", "last used", "revoked"],
          [[r["id"], r["name"], r["display"], r["email"], _when(r["created_at"]), _when(r["last_used_at"]),
            "yes" if r["revoked_at"] else ""] for r in rows])


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The admin key id from `admin-keys create` or `list`."),
           database: str | None = DATABASE) -> None:
    """Revoke an admin API key; running gateways refuse it within a second."""
    from aicredits.services.audit import Actor
    changed = _run(lambda op: op.revoke_admin_key(Actor.system("cli"), key_id))
    typer.echo(f"revoked {key_id}" if changed else f"{key_id} was already revoked")
