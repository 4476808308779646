"""`aicredits cache stats|purge`: the response caches' entries (docs/caching.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from aicredits.cli.main import DATABASE, _run, app
from aicredits.cli.output import inr, print_json, table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from aicredits.services.admin import Admin
    from aicredits.services.cache import CacheService
    from aicredits.settings import Settings

T = TypeVar("T")
cache_app = typer.Typer(help="The response caches: what they hold, and purging it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _with_cache(fn: Callable[[CacheService, Admin, Settings], Awaitable[T]]) -> T:
    """fn(CacheService, admin, settings) on the store the gateway uses (Redis when configured)."""
    from aicredits.services.cache import CacheService
    from aicredits.wiring.cache import open_stores

    async def call(admin: Admin, settings: Settings) -> T:
        redis: Redis | None = None
        if settings.redis_url:
            import redis.asyncio as aioredis
            redis = aioredis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            store, sql = open_stores(settings, admin.engine, redis)
            return await fn(CacheService(settings.cache, store, sql), admin, settings)
        finally:
            if redis is not None:
                await redis.aclose()
    return _run(call)


@cache_app.command("stats")
def cache_stats(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                database: str | None = DATABASE) -> None:
    """Live entries per model, and what hits saved (all accounts)."""
    out = _with_cache(lambda svc, admin, s: svc.stats())
    if as_json:
        print_json(out)
        return
    saved = out.get("savings") or {}
    typer.echo(f"entries: {out['entries']}" + (f" ({out['bytes']} bytes of answers)" if "bytes" in out else ""))
    typer.echo(f"hits served: {saved.get('hits', 0)}, tokens saved: "
               f"{saved.get('prompt_tokens', 0) + saved.get('completion_tokens', 0)}, "
               f"saved: {inr(saved.get('saved', 0))} INR")
    if out["models"]:
        cols = [c for c in ("model", "entries", "hits", "semantic", "bytes") if c in out["models"][0]]
        table(cols, [[m[c] for c in cols] for m in out["models"]])


@cache_app.command("purge")
def cache_purge(account: str | None = typer.Option(None, help="Only this account's entries (its email or id)."),
                model: str | None = typer.Option(None, help="Only this model's entries (e.g. openai/gpt-4o-mini)."),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                database: str | None = DATABASE) -> None:
    """Delete cached entries: all of them, or one account's and/or one model's. Running gateways
    stop serving them at once (a hit is always read from the store)."""
    async def fn(svc: CacheService, admin: Admin, settings: Settings) -> dict:
        from aicredits.catalog import load_catalog
        from aicredits.services.admin import AdminError
        from aicredits.store import accounts as accounts_repo

        account_id = None
        if account is not None:
            async with admin.engine.connect() as conn:
                acct = await (accounts_repo.by_id(conn, int(account)) if account.isdigit()
                              else accounts_repo.by_email(conn, account))
            if acct is None:
                raise AdminError(f"no account {account}")
            account_id = acct.id
        name = model
        if model is not None:
            spec = load_catalog(settings.extra_models).get(model)
            name = spec.id if spec is not None else model
        return {"purged": await svc.store.purge(account_id, name), "account": account_id, "model": name}
    out = _with_cache(fn)
    if as_json:
        print_json(out)
        return
    typer.echo(f"purged {out['purged']} entr{'y' if out['purged'] == 1 else 'ies'}")
