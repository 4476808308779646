"""Which database a command uses, and one line saying why it cannot be used.

One rule for the server and every command (docs/configuration.md, "Which database"): the
command's `--database URL`, else AICREDITS_DATABASE_URL, else `database_url` in the
AICREDITS_CONFIG file's [gateway] table, else `aicredits.db` in the state directory
(AICREDITS_STATE_DIR, else $XDG_DATA_HOME/aicredits, else ~/.local/share/aicredits), whatever the
working directory. Only `serve` and `migrate` create a database; every other command needs it to
exist and says which one it looked for when it does not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aicredits.settings import Settings

DATABASE_HELP = ("The database: sqlite:///path.db or postgresql://user:pass@host/db. Default: "
                 "AICREDITS_DATABASE_URL, else aicredits.db in the state directory (AICREDITS_STATE_DIR, "
                 "else ~/.local/share/aicredits), the one `serve` uses.")
POINT_AT = "point at the right one with --database URL or AICREDITS_DATABASE_URL"


_chosen: dict[str, str | None] = {"database": None}


def _remember(value: str | None) -> str | None:
    _chosen["database"] = value
    return value


# every command that uses the database has this option (`database: str | None = DATABASE`); its
# value is kept here as the command line is parsed, so the helpers need not pass it along
DATABASE = typer.Option(None, "--database", metavar="URL", help=DATABASE_HELP, show_default=False,
                        callback=_remember)


def database_option() -> str | None:
    """The running command's --database (None when not given)."""
    return _chosen["database"]


class DatabaseUnusable(Exception):
    """One line for the operator: which database, what is wrong, what to do."""


def load(database: str | None) -> Settings:
    """The settings, with the command's --database (when given) as the database URL; a bad
    setting is one line and exit 2."""
    from aicredits.settings import SettingsError, load_settings
    env = os.environ if database is None else {**os.environ, "AICREDITS_DATABASE_URL": database}
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        if database is not None:
            text = str(exc).replace("AICREDITS_DATABASE_URL (environment variable)", "--database")
            typer.echo(f"error: {text}", err=True)
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if database is not None:
        settings = settings.model_copy(update={"database_from": "--database"})
    return settings


def describe(settings: Settings) -> str:
    """'the SQLite database /abs/aicredits.db (the default location)', secrets redacted."""
    from aicredits.store.db import redact_url
    path = settings.sqlite_path
    what = f"the SQLite database {path}" if path else f"the database {redact_url(settings.database_url)}"
    source = {"default": "the default location"}.get(settings.database_from, f"from {settings.database_from}")
    return f"{what} ({source})"


def require_existing(settings: Settings) -> None:
    """A command other than serve/migrate never creates a SQLite file: when it is missing, say
    which file was looked for and how to point at the right one."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        _check_old_default(settings)
        raise DatabaseUnusable(
            f"no database: {describe(settings)} does not exist. Start the server once (`aicredits serve`, "
            f"or `aicredits migrate`) to create it, or {POINT_AT}.")


def prepare_new(settings: Settings) -> None:
    """serve/migrate: a new SQLite file's directory is created first."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        _check_old_default(settings)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusable(f"cannot create the directory of {describe(settings)}: {exc.strerror}") from None


def _check_old_default(settings: Settings) -> None:
    """Before the state directory, the default database was ./aicredits.db in the working
    directory. When the new default does not exist yet and an old one is here, nothing new is
    created: say how to keep using it."""
    from aicredits.settings import DEFAULT_DB_FILE
    old, new = Path(DEFAULT_DB_FILE).absolute(), settings.sqlite_path
    if new is not None and settings.database_from == "default" and old.is_file() and old != new:
        raise DatabaseUnusable(
            f"{old} exists, but the default database is now {settings.sqlite_path} (the same from any "
            f"directory) and does not exist yet. Keep using yours: move it there (mkdir -p "
            f"{new.parent} && mv {old} {new}), or set "
            f"AICREDITS_DATABASE_URL=sqlite:///{old}. Nothing was created.")


def explain(exc: BaseException, settings: Settings) -> str | None:
    """One line for an error met while opening the database, or None when it is not one."""
    from aicredits.store.db import database_error, redact_url
    if isinstance(exc, DatabaseUnusable):
        return str(exc)
    problem = database_error(exc, settings.database_url)
    if problem is not None:
        return f"{describe(settings)}: {problem}"
    if isinstance(exc, (OSError, ConnectionError)):
        return f"cannot reach the database ({redact_url(settings.database_url)}): {exc}"
    return None
