"""`aicredits serve`: migrate, create the first admin on an empty database, run uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

import uvicorn

from aicredits import logs
from aicredits.settings import Settings
from aicredits.store.db import make_engine, migrate, redact_url, sqlite_file

log = logging.getLogger("aicredits")
WELCOME_CREDITS_MICROS = 100_000_000   # 100 INR on the first admin's wallet, so the demo call works


async def _prepare(settings: Settings) -> dict | None:
    from aicredits.services.admin import ADMIN_EMAIL, Admin

    engine = make_engine(settings.database_url)
    try:
        await migrate(engine, settings.database_url)
        admin = Admin(engine)
        if await admin.account_count() > 0:
            return None
        password = secrets.token_urlsafe(12)
        await admin.create_user(ADMIN_EMAIL, name="Administrator", password=password, role="admin")
        key = await admin.create_key(ADMIN_EMAIL, name="first key", credits=WELCOME_CREDITS_MICROS)
        return {"email": ADMIN_EMAIL, "password": password, "key": key["key"], "key_id": key["id"]}
    finally:
        await engine.dispose()


def _announce(first: dict, settings: Settings, host: str, port: int) -> None:
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
    if sys.stdout.isatty():
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # not a terminal (a service manager, a log file): secrets go to a private file, not the log
    db_file = sqlite_file(settings.database_url)
    where = Path(db_file).resolve().parent if db_file and db_file != ":memory:" else Path.cwd()
    path = where / "aicredits-first-admin.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    log.warning("first start: admin account created; its password and first API key are in %s "
                "(readable by this user only)", path)


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    logs.configure(settings.log_level, settings.access_log)
    try:
        first = asyncio.run(_prepare(settings))
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    except (OSError, ConnectionError) as exc:
        sys.exit(f"error: cannot reach the database ({redact_url(settings.database_url)}): {exc}")
    if first:
        _announce(first, settings, host, port)
    log.info("serving on http://%s:%d with %d worker(s), database %s", host, port, workers,
             redact_url(settings.database_url))
    if workers > 1 and not settings.redis_url:
        log.warning("%d workers without AICREDITS_REDIS_URL: each worker counts per-key rate limits on its "
                    "own, so a key can get up to %d times its rpm/tpm (docs/rate-limits.md)", workers, workers)
    common = {"host": host, "port": port, "loop": "uvloop", "http": "httptools", "lifespan": "on",
              "access_log": False, "log_config": None, "server_header": False, "date_header": False,
              "proxy_headers": False, "timeout_graceful_shutdown": 10, "backlog": 4096}
    if workers == 1:
        from aicredits.app import Gateway
        uvicorn.run(Gateway(settings), **common)
    else:
        uvicorn.run("aicredits.app:create_app", factory=True, workers=workers, **common)
