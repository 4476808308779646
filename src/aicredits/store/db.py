"""Engines and migrations for SQLite (default, WAL) and PostgreSQL from one set of code."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("aicredits")
AnyRow = Row[*tuple[Any, ...]]     # a result row of any columns
# what services hold and pass to the store (they import no database library themselves)
Engine = AsyncEngine
Conn = AsyncConnection
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT = 10.0   # seconds; the default of AICREDITS_SQLITE_BUSY_TIMEOUT


def now_ms() -> int:
    return int(time.time() * 1000)


def row_dict(row: AnyRow) -> dict[str, Any]:
    """A result row as a plain dict (str keys: SQLAlchemy's quoted_name is a str subclass that
    JSON encoders refuse)."""
    return {str(k): v for k, v in row._mapping.items()}


def dialect_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {name!r}: use sqlite:/// or postgresql://")
    return name


def async_url(url: str) -> str:
    """SQLAlchemy's URL forms with the async driver chosen here."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return str(u.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        return u.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def sqlite_file(url: str) -> str | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    return u.database or ":memory:"


def postgres_dsn(url: str) -> str:
    """A libpq/asyncpg DSN for a postgresql:// URL."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let a bad URL (or its password) reach a log
        return "<unparseable database url>"


def database_error(exc: BaseException, url: str) -> str | None:
    """What is wrong, in one line, when opening the database raised exc (a driver error);
    None for anything else. A PostgreSQL database that does not exist says how to create it."""
    from urllib.parse import unquote

    from sqlalchemy.exc import DBAPIError
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    if code == "3D000":   # invalid_catalog_name: no database of that name
        u = make_url(url)
        name = unquote(u.database or "")
        flags = "".join(f" {flag} {value}" for flag, value in (("-h", u.host), ("-p", u.port), ("-U", u.username))
                        if value)
        return (f'the PostgreSQL database "{name}" does not exist on {u.host or "localhost"}:{u.port or 5432}. '
                f'Create it: createdb{flags} {name} (or, in psql: CREATE DATABASE "{name}";), then start again')
    first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


def configure_sqlite(dbapi_conn: DBAPIConnection, busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, sqlite_busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> AsyncEngine:
    """An engine on `url`; on SQLite a statement waits up to `sqlite_busy_timeout` seconds for
    another connection's write lock (AICREDITS_SQLITE_BUSY_TIMEOUT), then fails "database is locked"."""
    if dialect_of(url) == "sqlite":
        engine = create_async_engine(async_url(url), connect_args={"timeout": sqlite_busy_timeout})

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: DBAPIConnection, _record: object) -> None:
            configure_sqlite(dbapi_conn, sqlite_busy_timeout)

        return engine
    return create_async_engine(async_url(url), pool_size=5, max_overflow=10, pool_pre_ping=True)


def _alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["database_url"] = url
    return cfg


_REVISION = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*(?:#.*)?$", re.MULTILINE)


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision, read from the files of migrations/versions without
    loading alembic; None when they do not name exactly one head (then alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {name: ast.literal_eval(value) for name, value in _REVISION.findall(path.read_text())}
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else down or ())
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def at_head(engine: AsyncEngine) -> bool:
    """Whether the schema already is at the newest migration (one cheap query, no alembic)."""
    head = head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:   # no schema yet, or the database cannot be used: alembic runs and says so
        return False
    return [row[0] for row in rows] == [head]


async def migrate(engine: AsyncEngine, url: str) -> None:
    """Bring the schema to the newest migration (idempotent). A database already there is
    checked with one query: alembic is only loaded when there is something to do."""
    if await at_head(engine):
        return
    from alembic import command

    cfg = _alembic_config(url)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    if dialect_of(url) == "postgresql":
        async with engine.begin() as conn:
            # two processes migrating at once wait for each other
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7215098)")
            await conn.run_sync(run)
        return
    # SQLite: two processes migrating one file at once (a `migrate` beside a first `serve`) take
    # turns; the one that waited finds the schema at head
    async with _file_lock(url, MIGRATE_LOCK_SUFFIX, "another process is migrating the database; waiting for it"):
        if await at_head(engine):
            return
        async with engine.begin() as conn:
            await conn.run_sync(run)


SETUP_LOCK_KEY = 7215099   # pg_advisory_lock key of setup_lock (migrate's own lock is 7215098)
SETUP_LOCK_SUFFIX = "-setup.lock"   # beside a SQLite file: aicredits.db-setup.lock
MIGRATE_LOCK_SUFFIX = "-migrate.lock"   # beside a SQLite file, held while one process migrates it


@contextlib.asynccontextmanager
async def setup_lock(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    """Held by one process at a time per database, around a first start's preparation (migrate,
    then the first admin): processes started at once on one new database wait here for the one
    that prepares it, then find it ready. PostgreSQL: a session advisory lock on a connection of
    its own (released with it, also when the process dies). SQLite: an exclusive flock on
    `<file>-setup.lock` beside the database (kept there; released when the process exits)."""
    if dialect_of(url) == "postgresql":
        async with engine.connect() as conn:
            got = (await conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({SETUP_LOCK_KEY})")).scalar()
            if not got:
                log.info("another process is preparing the database (migrations, first admin); waiting for it")
                await conn.exec_driver_sql(f"SELECT pg_advisory_lock({SETUP_LOCK_KEY})")
            try:
                yield
            finally:
                await conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SETUP_LOCK_KEY})")
        return
    async with _file_lock(url, SETUP_LOCK_SUFFIX,
                          "another process is preparing the database (migrations, first admin); waiting for it"):
        yield


@contextlib.asynccontextmanager
async def _file_lock(url: str, suffix: str, waiting: str) -> AsyncIterator[None]:
    """An exclusive flock on `<SQLite file><suffix>` (kept there; released when the process
    exits), logging `waiting` when another process holds it; nothing for an in-memory database."""
    path = sqlite_file(url)
    if path is None or path == ":memory:" or path.startswith("file:"):
        yield
        return
    fd = os.open(path + suffix, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(waiting)
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock
