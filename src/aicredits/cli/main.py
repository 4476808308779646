"""`aicredits` commands (docs/cli.md: scripts and tests rely on these exact forms)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from aicredits import __version__
from aicredits.cli import gcmode
from aicredits.cli.admin_keys import app as admin_keys_app
from aicredits.cli.database import DATABASE, database_option
from aicredits.cli.output import inr, print_json, table, when
from aicredits.domain.keys import expiry_text, parse_expiry, parse_model_patterns
from aicredits.domain.money import inr_to_micros, micros_to_inr
from aicredits.domain.ratelimit import MAX_LIMIT

if TYPE_CHECKING:
    from aicredits.services.admin import Admin
    from aicredits.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="aicredits: an OpenAI-compatible LLM gateway sold on prepaid INR credits.",
                  epilog="Settings: AICREDITS_* variables and the AICREDITS_CONFIG file (docs/configuration.md). "
                         "The database, for the server and every command from any directory: the command's "
                         "--database URL, else AICREDITS_DATABASE_URL, else aicredits.db in the state directory "
                         "(AICREDITS_STATE_DIR, else ~/.local/share/aicredits). Only serve and migrate create it.",
                  no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list and revoke API keys, and set their rate limits, expiry and models.", no_args_is_help=True)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
wallet_app = typer.Typer(help="Show and credit wallets.", no_args_is_help=True)
models_app = typer.Typer(help="The model catalog.", no_args_is_help=True)
ledger_app = typer.Typer(help="Check the ledger.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(wallet_app, name="wallet")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(admin_keys_app, name="admin-keys")


def _settings() -> Settings:
    from aicredits.cli.database import load
    return load(database_option())


def _run(fn: Callable[[Admin, Settings], Awaitable[T]], *, create: bool = False) -> T:
    """Run fn(admin, settings) against the migrated database (docs/configuration.md, "Which
    database"). Only `migrate` (create=True) and `serve` create one; other commands need it to
    exist and say which database they looked for when it does not."""
    from aicredits.cli.database import explain, prepare_new, require_existing
    from aicredits.services.admin import Admin, AdminError
    from aicredits.store.db import make_engine, migrate

    settings = _settings()

    async def go() -> T:
        if create:
            prepare_new(settings)
        else:
            require_existing(settings)
        engine = make_engine(settings.database_url, settings.sqlite_busy_timeout)
        try:
            await migrate(engine, settings.database_url)
            return await fn(Admin(engine), settings)
        finally:
            await engine.dispose()
    try:
        return asyncio.run(go())
    except AdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:   # an unsupported or malformed AICREDITS_DATABASE_URL
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        line = explain(exc, settings)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        raise typer.Exit(1) from None


async def _noop(value: T) -> T:
    return value


def _amount(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        micros = inr_to_micros(value)
    except (ValueError, TypeError):
        typer.echo(f"error: {name} must be an INR amount with at most 6 decimals, got {value!r}", err=True)
        raise typer.Exit(2) from None
    if micros < 0:
        typer.echo(f"error: {name} must not be negative", err=True)
        raise typer.Exit(2)
    return micros


RPM_HELP = ("Requests per minute this key may make (per rate window: AICREDITS_RATE_WINDOW_SECONDS, "
            "60 by default); beyond it calls get 429 rate_limit_error.")
TPM_HELP = ("Tokens per minute (prompt + completion, as billed) this key may use; once its recent calls "
            "reached it, calls get 429 rate_limit_error.")


def _rate(value: str, name: str) -> int | None:
    """A rate limit option: a positive integer, or 'none' (unlimited)."""
    if value.strip().lower() == "none":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_LIMIT:
        typer.echo(f"error: {name} must be an integer from 1 to {MAX_LIMIT}, or 'none'; got {value!r}", err=True)
        raise typer.Exit(2)
    return n


EXPIRES_HELP = ("When the key stops working (then calls get 401): a duration from now (12h, 30d, 2w) or an "
                "ISO date or date-time (2026-12-31 is its start, UTC). Default: never.")
MODELS_HELP = ("The models the key may call, comma-separated glob patterns ('openai/*,demo/*'); any other "
               "model gets 403 permission_error. Default: every model.")


def _expiry(value: str | None) -> int | None:
    try:
        return parse_expiry(value, int(time.time() * 1000))
    except ValueError as exc:
        typer.echo(f"error: --expires: {exc}", err=True)
        raise typer.Exit(2) from None


def _models(value: str | None) -> tuple[str, ...] | None:
    try:
        return parse_model_patterns(value)
    except ValueError as exc:
        typer.echo(f"error: --models: {exc}", err=True)
        raise typer.Exit(2) from None


def _rate_text(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aicredits {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Settings come from AICREDITS_* environment variables and the AICREDITS_CONFIG TOML file."""


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
          port: int = typer.Option(8000, help="TCP port."),
          workers: int = typer.Option(1, min=1, help="Worker processes (each a full gateway)."),
          database: str | None = DATABASE) -> None:
    """Bind the port, migrate (creating the database if needed), then serve the API (first start:
    creates an admin account). Logs are text on a terminal, JSON otherwise (AICREDITS_LOG_FORMAT)."""
    from aicredits.cli.serve import run_server
    run_server(_settings(), host, port, workers)


@app.command()
def migrate(database: str | None = DATABASE) -> None:
    """Create the database (SQLite) and its schema, or upgrade it."""
    settings = _run(lambda admin, s: _noop(s), create=True)
    from aicredits.cli.database import describe
    typer.echo(f"{describe(settings)} is at the newest migration")


@keys_app.command("create")
def keys_create(email: str | None = typer.Option(None, help="Account email (created if missing; a local "
                                                           "default account when omitted)."),
                name: str = typer.Option("", help="A label for the key."),
                credits: str | None = typer.Option(None, help="INR to grant the account first."),
                limit: str | None = typer.Option(None, help="The key's own credit limit in INR."),
                rpm: int | None = typer.Option(None, min=1, max=MAX_LIMIT, help=RPM_HELP + " Default: unlimited."),
                tpm: int | None = typer.Option(None, min=1, max=MAX_LIMIT, help=TPM_HELP + " Default: unlimited."),
                expires: str | None = typer.Option(None, help=EXPIRES_HELP),
                models: str | None = typer.Option(None, help=MODELS_HELP),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                database: str | None = DATABASE) -> None:
    """Create an API key (shown once)."""
    credit_micros = _amount(credits, "--credits") or 0
    limit_micros = _amount(limit, "--limit")
    expires_at = _expiry(expires)
    patterns = _models(models)
    out = _run(lambda admin, s: admin.create_key(email, name=name, credits=credit_micros, limit=limit_micros,
                                                 rpm=rpm, tpm=tpm, expires_at=expires_at, models=patterns))
    if as_json:
        print_json({"key": out["key"], "id": out["id"], "account": out["account"], "name": out["name"],
                    "balance": micros_to_inr(out["balance"]),
                    "limit": micros_to_inr(out["limit"]) if out["limit"] is not None else None,
                    "rpm": out["rpm"], "tpm": out["tpm"],
                    "expires_at": expiry_text(expires_at) if expires_at is not None else None,
                    "models": out["models"]})
        return
    typer.echo(f"key:     {out['key']}")
    typer.echo(f"id:      {out['id']}")
    typer.echo(f"account: {out['account']}")
    typer.echo(f"balance: {inr(out['balance'])} INR")
    if rpm is not None or tpm is not None:
        typer.echo(f"limits:  rpm {_rate_text(rpm)}, tpm {_rate_text(tpm)}")
    if expires_at is not None:
        typer.echo(f"expires: {expiry_text(expires_at)}")
    if patterns:
        typer.echo(f"models:  {', '.join(patterns)}")
    typer.echo("Store the key now: it is not shown again.")


@keys_app.command("list")
def keys_list(email: str | None = typer.Option(None, help="Only this account's keys."),
              as_json: bool = typer.Option(False, "--json"),
              database: str | None = DATABASE) -> None:
    """List keys (never their secrets)."""
    rows = _run(lambda admin, s: admin.list_keys(email))
    if as_json:
        print_json([{**r, "limit": micros_to_inr(r["limit"]) if r["limit"] is not None else None,
                     "expires_at": expiry_text(r["expires_at"]) if r["expires_at"] is not None else None,
                     "spent": micros_to_inr(r["spent"]), "held": micros_to_inr(r["held"])} for r in rows])
        return
    table(["id", "account", "name", "key", "limit", "rpm", "tpm", "expires", "models", "spent", "revoked"],
          [[r["id"], r["account"], r["name"], r["display"], inr(r["limit"]) if r["limit"] is not None else "-",
            "-" if r["rpm"] is None else r["rpm"], "-" if r["tpm"] is None else r["tpm"],
            _expires_cell(r["expires_at"]), ",".join(r["models"]) if r["models"] else "*", inr(r["spent"]),
            "yes" if r["revoked"] else ""]
           for r in rows])


def _expires_cell(at: int | None) -> str:
    if at is None:
        return "-"
    return expiry_text(at) + (" (expired)" if at <= time.time() * 1000 else "")


@keys_app.command("limit")
def keys_limit(key_id: str = typer.Argument(..., help="The key id from `keys create` or `keys list`."),
               rpm: str | None = typer.Option(None, metavar="N|none", help=RPM_HELP + " 'none' removes it."),
               tpm: str | None = typer.Option(None, metavar="N|none", help=TPM_HELP + " 'none' removes it."),
               expires: str | None = typer.Option(None, metavar="WHEN|none",
                                                  help=EXPIRES_HELP.replace(" Default: never.", "")
                                                  + " 'none': it never expires."),
               models: str | None = typer.Option(None, metavar="PATTERNS|none",
                                                 help=MODELS_HELP.replace(" Default: every model.", "")
                                                 + " 'none': every model."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
               database: str | None = DATABASE) -> None:
    """Set or remove a key's rate limits, expiry and model list (running gateways apply them
    within a second). Options left out are kept: `keys limit ID --rpm 60` keeps the key's tpm."""
    changes: dict = {}
    if rpm is not None:
        changes["rpm"] = _rate(rpm, "--rpm")
    if tpm is not None:
        changes["tpm"] = _rate(tpm, "--tpm")
    for name, value in (("--expires", expires), ("--models", models)):
        if value is not None and not value.strip():
            typer.echo(f"error: {name} is empty; give a value, or 'none' to remove it", err=True)
            raise typer.Exit(2)
    if expires is not None:
        changes["expires_at"] = None if expires.strip().lower() == "none" else _expiry(expires)
    if models is not None:
        changes["models"] = None if models.strip().lower() == "none" else _models(models)
    if not changes:
        typer.echo("error: give --rpm, --tpm, --expires and/or --models ('none' removes a limit)", err=True)
        raise typer.Exit(2)
    out = _run(lambda admin, s: admin.change_key(key_id, changes))
    if as_json:
        print_json({"id": out["id"], "rpm": out["rpm"], "tpm": out["tpm"],
                    "expires_at": expiry_text(out["expires_at"]) if out["expires_at"] is not None else None,
                    "models": out["models"]})
        return
    typer.echo(f"{key_id}: rpm {_rate_text(out['rpm'])}, tpm {_rate_text(out['tpm'])}, "
               f"expires {_expires_cell(out['expires_at'])}, models {','.join(out['models']) if out['models'] else '*'}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id from `keys create` or `keys list`."),
                database: str | None = DATABASE) -> None:
    """Revoke a key; every running gateway refuses it within a second."""
    changed = _run(lambda admin, s: admin.revoke_key(key_id))
    typer.echo(f"revoked {key_id}" if changed else f"{key_id} was already revoked")


@users_app.command("create")
def users_create(email: str = typer.Option(..., help="Email (the sign-in name)."),
                 name: str = typer.Option(""),
                 admin_role: bool = typer.Option(False, "--admin", help="Give the account the admin role."),
                 password: str | None = typer.Option(None, help="Password (prompted when omitted and "
                                                                   "stdin is a terminal)."),
                 database: str | None = DATABASE) -> None:
    """Create an account, or set the password of an existing one. Without --password it is
    asked for on a terminal; otherwise --password is required (an account without a password
    cannot sign in to the dashboard)."""
    if password is None and sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("error: --password is required when stdin is not a terminal: an account without a "
                   "password cannot sign in to the dashboard. Nothing was created. (An account that only "
                   "needs API keys: `aicredits keys create --email E`.)", err=True)
        raise typer.Exit(2)
    out = _run(lambda admin, s: admin.create_user(email, name=name, password=password,
                                                  role="admin" if admin_role else "user"))
    typer.echo(f"account {out['id']}: {out['email']} ({out['role']})")


@wallet_app.command("show")
def wallet_show(email: str | None = typer.Option(None, help="The account. Default: default@aicredits.local "
                                                           "when it exists (`keys create` without --email), "
                                                           "else the only account."),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object, entries included."),
                database: str | None = DATABASE) -> None:
    """Balance, holds and the latest 10 ledger entries of a wallet."""
    w = _run(lambda admin, s: admin.wallet(email))
    entries = [{"id": e["id"], "kind": e["kind"], "amount": micros_to_inr(e["amount"]),
                "balance_after": micros_to_inr(e["balance_after"]), "note": e["note"], "call_id": e["call_id"],
                "key_id": e["key_id"], "created_at": e["created_at"]} for e in w["entries"]]
    if as_json:
        print_json({**{k: (micros_to_inr(v) if k in ("balance", "held", "available", "total_added", "total_spent")
                           else v) for k, v in w.items() if k != "entries"}, "entries": entries})
        return
    typer.echo(f"account:   {w['account']}")
    typer.echo(f"balance:   {inr(w['balance'])} INR (available {inr(w['available'])}, held {inr(w['held'])})")
    typer.echo(f"added:     {inr(w['total_added'])} INR   spent: {inr(w['total_spent'])} INR")
    table(["entry", "time (UTC)", "kind", "amount", "balance after", "note"],
          [[e["id"], when(e["created_at"]), e["kind"], inr(e["amount"]), inr(e["balance_after"]), e["note"]]
           for e in w["entries"]])


@wallet_app.command("grant")
def wallet_grant(amount: str = typer.Argument(..., help="INR to add (up to 6 decimals)."),
                 email: str = typer.Option(..., help="The account to credit."),
                 note: str = typer.Option("admin grant"),
                 database: str | None = DATABASE) -> None:
    """Add credits to a wallet (a `grant` ledger entry)."""
    micros = _amount(amount, "amount")
    if not micros:
        typer.echo("error: amount must be positive", err=True)
        raise typer.Exit(2)
    balance = _run(lambda admin, s: admin.grant(email, micros, note=note))
    typer.echo(f"granted {inr(micros)} INR to {email}; balance {inr(balance)} INR")


@app.command()
def usage(email: str | None = typer.Option(None, help="Only this account's calls (default: every account)."),
          limit: int = typer.Option(20, min=1, max=10000, help="How many of the latest calls."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON array, every field of each call."),
          database: str | None = DATABASE) -> None:
    """The latest calls, newest first: when, account, key, model, tokens, cost, latency, how each ended."""
    rows = _run(lambda admin, s: admin.usage(email, limit))
    if as_json:
        print_json([{**r, "cost": micros_to_inr(r["cost"]), "hold": micros_to_inr(r["hold"])} for r in rows])
        return
    table(["time (UTC)", "account", "key", "model", "prompt", "completion", "cost INR", "ms", "status", "end",
           "request"],
          [[when(r["created_at"]), r["account"], r["key_id"] or "-", r["model"], r["prompt_tokens"],
            r["completion_tokens"], inr(r["cost"]), r["latency_ms"], r["status"], r["end_state"], r["request_id"]]
           for r in rows])


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every catalog model with its prices (USD or INR per 1M units, as the catalog gives them)."""
    from aicredits.catalog import load_catalog
    settings = _settings()
    catalog = load_catalog(settings.extra_models)
    rows = []
    for spec in catalog:
        raw = spec.raw
        rows.append({"id": spec.id, "endpoint": spec.endpoint, "currency": spec.currency,
                     "input_cost_per_1m": raw.get("input_cost_per_1m"),
                     "output_cost_per_1m": raw.get("output_cost_per_1m"), "priced": spec.priced,
                     "provider_configured": spec.provider in settings.providers and (
                         spec.provider == "demo" or bool(settings.providers[spec.provider].api_key)
                         or settings.providers[spec.provider].kind == "openai_compatible")})
    if as_json:
        print_json(rows)
        return
    table(["model", "endpoint", "cur", "in/1M", "out/1M", "served"],
          [[r["id"], r["endpoint"], r["currency"], r["input_cost_per_1m"] if r["input_cost_per_1m"] is not None
            else "-", r["output_cost_per_1m"] if r["output_cost_per_1m"] is not None else "-",
            "yes" if r["priced"] and r["provider_configured"] else "no"] for r in rows])


@ledger_app.command("verify")
def ledger_verify(database: str | None = DATABASE) -> None:
    """Check the whole ledger: each entry's balance_after and sign, every wallet's balance,
    held and totals against its entries and holds, every key's spent (within its limit) and
    held, and that no hold outlived its call. Exit 0 when all hold; else print each failed
    check with its first bad row on stderr and exit 1."""
    findings = _run(lambda admin, s: admin.verify())
    if findings:
        for f in findings:
            typer.echo(str(f), err=True)
        typer.echo(f"ledger verify: {len(findings)} check(s) failed", err=True)
        raise typer.Exit(1)
    typer.echo("ledger verify: ok")


# the dashboard's user commands live beside this module and register on users_app
from aicredits.cli import cache as _cache  # noqa: F401 - imported for its commands
from aicredits.cli import users as _users  # noqa: F401 - imported for its commands


def main() -> None:
    gcmode.starting()   # few collections while the command starts (cli/gcmode.py)
    app()
