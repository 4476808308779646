"""`aicredits serve`: migrate, create the first admin on an empty database, run uvicorn."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from aicredits import logs
from aicredits.api.connections import ConnectionLimits, guarded_protocol
from aicredits.cli import gcmode
from aicredits.settings import Settings
from aicredits.store.db import Engine, at_head, make_engine, migrate, redact_url, setup_lock, sqlite_file

if TYPE_CHECKING:
    from aicredits.services.admin import Admin

log = logging.getLogger("aicredits")
WELCOME_CREDITS_MICROS = 100_000_000   # 100 INR on the first admin's wallet, so the demo call works
CREDENTIALS_FILE = "aicredits-first-admin.txt"   # next to the SQLite file, else the working directory


class CredentialsFileError(Exception):
    pass


async def _prepare(settings: Settings, credentials: Path | None) -> dict | None:
    """Migrate; on an empty database create the first admin and its key. With `credentials`
    (not a terminal), the private file is created first, exclusively: when it cannot be, no
    admin is created and nothing secret is written anywhere."""
    from aicredits.services.admin import ADMIN_EMAIL, Admin

    engine = make_engine(settings.database_url, settings.sqlite_busy_timeout)
    admin = Admin(engine)
    try:
        if await _ready(settings, engine, admin):   # a restart: nothing to prepare, no lock taken
            return None
        # processes first started at once on one new database: one migrates and creates the first
        # admin, the others wait here, then find an account and start as on a restart
        async with setup_lock(engine, settings.database_url):
            await migrate(engine, settings.database_url)
            if await admin.account_count() > 0:
                return None
            fd, credentials = _create_private(credentials) if credentials else (None, None)
            try:
                password = secrets.token_urlsafe(12)
                await admin.create_user(ADMIN_EMAIL, name="Administrator", password=password, role="admin")
                key = await admin.create_key(ADMIN_EMAIL, name="first key", credits=WELCOME_CREDITS_MICROS)
            except BaseException:
                if fd is not None and credentials is not None:
                    os.close(fd)
                    credentials.unlink(missing_ok=True)
                raise
            return {"email": ADMIN_EMAIL, "password": password, "key": key["key"], "key_id": key["id"], "fd": fd,
                    "file": credentials}
    finally:
        await engine.dispose()


async def _ready(settings: Settings, engine: Engine, admin: Admin) -> bool:
    """Whether the database is migrated and has an account already (checked without the lock;
    a SQLite file that does not exist yet is not ready, and is not created here)."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        return False
    return await at_head(engine) and await admin.account_count() > 0


CREDENTIALS_TRIES = 100   # aicredits-first-admin.txt, then .2.txt ... .100.txt


def _create_private(path: Path) -> tuple[int, Path]:
    """A new file only this user can read, at `path` or, when that name is taken (by an older
    first start's file, someone else's file or a symlink), at the first free name of
    `aicredits-first-admin.N.txt`: never an existing file (whatever its mode), never through a
    symlink (O_EXCL refuses any existing name, a dangling symlink included; O_NOFOLLOW refuses a
    symlink in the last component). Returns the descriptor and the name it got."""
    taken: list[str] = []
    for n in range(1, CREDENTIALS_TRIES + 1):
        candidate = path if n == 1 else path.with_name(f"{path.stem}.{n}{path.suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            taken.append(candidate.name)
            continue
        except OSError as exc:
            raise CredentialsFileError(
                f"cannot create {candidate} ({exc.strerror}); the first admin's password and API key are "
                "written only to a new private file. No admin account was created, and nothing secret was "
                "written.") from None
        if taken:
            log.warning("%s already exists and is left untouched; the first admin's credentials go to a new "
                        "file, %s", path, candidate)
        return fd, candidate
    raise CredentialsFileError(
        f"{path} and {CREDENTIALS_TRIES - 1} numbered names beside it already exist; the first admin's password "
        "and API key are written only to a new private file, never into an existing one. Move them away and "
        "start again: no admin account was created, and nothing secret was written.")


def _credentials_path(settings: Settings) -> Path:
    db_file = sqlite_file(settings.database_url)
    where = Path(db_file).resolve().parent if db_file and db_file != ":memory:" else Path.cwd()
    return where / CREDENTIALS_FILE


def _announce(first: dict, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    text = (
        "\n  aicredits: first start, an admin account was created.\n"
        f"    sign-in email: {first['email']}\n"
        f"    password:      {first['password']}\n"
        f"    API key:       {first['key']}  (id {first['key_id']}, 100 INR of credits)\n\n"
        "  Try one call (the demo model answers offline and is billed like any other):\n\n"
        f"    curl {base}/v1/chat/completions \\\n"
        f"      -H 'Authorization: Bearer {first['key']}' \\\n"
        "      -H 'Content-Type: application/json' \\\n"
        "      -d '{\"model\": \"demo/echo\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'\n\n"
        f"    curl {base}/v1/credits -H 'Authorization: Bearer {first['key']}'\n\n")
    if first["fd"] is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # not a terminal (a service manager, a log file): secrets go to the private file, not the log
    with os.fdopen(first["fd"], "w") as fh:
        fh.write(text)
    log.warning("first start: admin account created; its password and first API key are in %s "
                "(readable by this user only)", first["file"])


class PortBusy(Exception):
    pass


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else is done, so a port in use is one line
    at once (and no first admin is created for a server that cannot start)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        hint = (" (another program is listening there: stop it, or choose another port with --port, "
                "or PORT=... with make run)") if exc.errno == errno.EADDRINUSE else ""
        raise PortBusy(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    sock.set_inheritable(True)
    return sock


def _redis_warning(url: str, timeout: float) -> str | None:
    """None when the configured Redis answers a PING now; else the warning to log at start."""
    import redis

    timeout = max(timeout, 1.0)
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return (f"AICREDITS_REDIS_URL: Redis at {_redact(url)} is not reachable "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); starting anyway, "
                "fail-open: each process counts rate limits and caches on its own until Redis answers "
                "(docs/rate-limits.md)")
    return None


def _redact(url: str) -> str:
    """A redis:// URL without its password."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    from aicredits.cli.database import explain, prepare_new

    logs.configure(settings.log_level, settings.access_log, settings.log_format)
    credentials = None if sys.stdout.isatty() else _credentials_path(settings)
    try:
        sock = _listen(host, port)
    except PortBusy as exc:
        sys.exit(f"error: {exc}")
    try:
        prepare_new(settings)
        first = asyncio.run(_prepare(settings, credentials))
    except CredentialsFileError as exc:
        sys.exit(f"error: {exc}")
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    except Exception as exc:
        line = explain(exc, settings)
        if line is None:
            raise
        sys.exit(f"error: {line}")
    if first:
        _announce(first, host, port)
    if settings.redis_url and (warning := _redis_warning(settings.redis_url, settings.redis_timeout)):
        log.warning("%s", warning)
    if workers > 1 and not settings.redis_url:
        log.warning("%d workers without AICREDITS_REDIS_URL: each worker counts per-key rate limits on its "
                    "own, so a key can get up to %d times its rpm/tpm (docs/rate-limits.md)", workers, workers)
    serving = ("serving on http://%s:%d with %d worker(s), database %s",
               host if ":" not in host else f"[{host}]", sock.getsockname()[1], workers,
               redact_url(settings.database_url))
    # httptools, with header and body timeouts and a connection cap (api/connections.py); no
    # WebSocket upgrades (nothing here speaks them).
    # SIGTERM (or Ctrl-C): stop accepting, let running calls finish for drain_seconds, then cut the
    # streams still open (their cut event, billed by its rule), settle everything and exit; see
    # "Graceful restarts" in docs/operations.md
    limits = ConnectionLimits(settings.header_timeout, settings.body_timeout, settings.max_connections)
    common: dict[str, Any] = {"host": host, "port": port, "loop": "uvloop", "http": guarded_protocol(limits), "ws": "none",
              "lifespan": "on", "access_log": False, "log_config": None, "server_header": False,
              "date_header": False, "proxy_headers": False, "timeout_graceful_shutdown": settings.drain_seconds,
              "backlog": 4096}
    from aicredits.infra.metrics import MULTIPROC_ENV
    if workers == 1:
        from aicredits.app import Gateway
        os.environ.pop(MULTIPROC_ENV, None)   # one process: its metrics in memory
        server = _Server(uvicorn.Config(Gateway(settings), **common), serving)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        if not server.started:
            sys.exit(1)   # the app's start-up failed: its error is logged
        return
    # N workers, one /metrics: each worker writes its metrics to files in a fresh directory (set
    # before the workers start, so they inherit it) and a scrape reads them all; removed at exit
    metrics_dir = tempfile.mkdtemp(prefix="aicredits-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    log.info("the %d workers' metrics are kept in %s while they run (GET /metrics sums them)", workers, metrics_dir)
    config = uvicorn.Config("aicredits.app:create_app", factory=True, workers=workers, **common)
    # the port is bound (above); each worker logs "Application startup complete" when it accepts
    log.info(serving[0].replace("serving on", "listening on") + "; starting the workers", *serving[1:])
    gcmode.serving()   # (few collections while the command started, cli/gcmode.py)
    try:
        _Supervisor(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Server(uvicorn.Server):
    """uvicorn's server, which says "serving on ..." once it accepts connections (its app started
    and the socket listening), not before; and which sleeps until it is told to stop instead of
    waking ten times a second to look (uvicorn's main loop)."""

    def __init__(self, config: uvicorn.Config, serving: tuple) -> None:
        super().__init__(config)
        self._serving = serving
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        c = self.config
        if c.date_header or c.callback_notify is not None or c.limit_max_requests is not None:
            await super().main_loop()   # what its ticks are for (none of it is used here)
            return
        self._loop = asyncio.get_running_loop()
        await self.on_tick(0)   # the default headers, set once (no Date header, no Server header)
        while not self.should_exit:
            await self._stop.wait()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:   # (a signal handler: the loop is woken through its own pipe)
            self._loop.call_soon_threadsafe(self._stop.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # the start-up objects are frozen (lifespan.py): collect what serving makes as usual from
        # now on (few collections while the command started, cli/gcmode.py)
        gcmode.serving()
        if self.started:
            log.info(*self._serving)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, which closes its own copy of the listening socket as soon as it
    is told to stop: the workers close theirs when their drain begins, so from then on new
    connections are refused (a load balancer moves on to another server) instead of waiting in the
    kernel's queue for a process that will never accept them."""

    def _close_listener(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        self._close_listener()
        super().handle_term()

    def handle_int(self) -> None:
        self._close_listener()
        super().handle_int()
