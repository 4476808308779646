"""`aicredits serve`: migrate, create the first admin on an empty database, run uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from aicredits import logs
from aicredits.api.connections import ConnectionLimits, guarded_protocol
from aicredits.settings import Settings
from aicredits.store.db import make_engine, migrate, redact_url, sqlite_file

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

    engine = make_engine(settings.database_url)
    try:
        await migrate(engine, settings.database_url)
        admin = Admin(engine)
        if await admin.account_count() > 0:
            return None
        fd = _create_private(credentials) if credentials else None
        try:
            password = secrets.token_urlsafe(12)
            await admin.create_user(ADMIN_EMAIL, name="Administrator", password=password, role="admin")
            key = await admin.create_key(ADMIN_EMAIL, name="first key", credits=WELCOME_CREDITS_MICROS)
        except BaseException:
            if fd is not None and credentials is not None:
                os.close(fd)
                credentials.unlink(missing_ok=True)
            raise
        return {"email": ADMIN_EMAIL, "password": password, "key": key["key"], "key_id": key["id"], "fd": fd}
    finally:
        await engine.dispose()


def _create_private(path: Path) -> int:
    """A new file only this user can read: never an existing file (whatever its mode), never
    through a symlink (O_EXCL refuses any existing name, a dangling symlink included; O_NOFOLLOW
    refuses a symlink in the last component)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        what = "a symlink" if path.is_symlink() else "a file"
        raise CredentialsFileError(
            f"{path} already exists ({what}); the first admin's password and API key are written only to a "
            "new private file, never into an existing one. Move it away and start again: no admin account "
            "was created, and nothing secret was written.") from None
    except OSError as exc:
        raise CredentialsFileError(
            f"cannot create {path} ({exc.strerror}); the first admin's password and API key are written "
            "only to that new private file. No admin account was created, and nothing secret was "
            "written.") from None


def _credentials_path(settings: Settings) -> Path:
    db_file = sqlite_file(settings.database_url)
    where = Path(db_file).resolve().parent if db_file and db_file != ":memory:" else Path.cwd()
    return where / CREDENTIALS_FILE


def _announce(first: dict, host: str, port: int, credentials: Path | None) -> None:
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
                "(readable by this user only)", credentials)


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    logs.configure(settings.log_level, settings.access_log)
    credentials = None if sys.stdout.isatty() else _credentials_path(settings)
    try:
        first = asyncio.run(_prepare(settings, credentials))
    except CredentialsFileError as exc:
        sys.exit(f"error: {exc}")
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    except (OSError, ConnectionError) as exc:
        sys.exit(f"error: cannot reach the database ({redact_url(settings.database_url)}): {exc}")
    if first:
        _announce(first, host, port, credentials)
    log.info("serving on http://%s:%d with %d worker(s), database %s", host, port, workers,
             redact_url(settings.database_url))
    if workers > 1 and not settings.redis_url:
        log.warning("%d workers without AICREDITS_REDIS_URL: each worker counts per-key rate limits on its "
                    "own, so a key can get up to %d times its rpm/tpm (docs/rate-limits.md)", workers, workers)
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
        uvicorn.run(Gateway(settings), **common)
        return
    # N workers, one /metrics: each worker writes its metrics to files in a fresh directory (set
    # before the workers start, so they inherit it) and a scrape reads them all; removed at exit
    metrics_dir = tempfile.mkdtemp(prefix="aicredits-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    log.info("the %d workers' metrics are kept in %s while they run (GET /metrics sums them)", workers, metrics_dir)
    config = uvicorn.Config("aicredits.app:create_app", factory=True, workers=workers, **common)
    try:
        _Supervisor(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


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
