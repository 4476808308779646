"""The gateway in this test's event loop (httpx.ASGITransport; responses are read whole), against
the fake OpenAI upstream and a real database, with its background tasks (lease renewals, the
sweeper) running as in `serve`."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from aicredits.app import Gateway
from aicredits.services.admin import Admin
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate
from tests.conftest import MARKUP, USD_INR


@dataclass
class InProc:
    gw: Gateway
    client: httpx.AsyncClient
    admin: Admin
    engine: object

    async def new_key(self, credits: int, limit: int | None = None) -> dict:
        email = f"inproc-{uuid.uuid4().hex[:10]}@example.com"
        out = await self.admin.create_key(email, name="test", credits=credits, limit=limit)
        return {**out, "email": email, "headers": {"Authorization": f"Bearer {out['key']}"}}

    async def key_row(self, key: dict) -> dict:
        (row,) = [r for r in await self.admin.list_keys(key["email"]) if r["id"] == key["id"]]
        return row

    async def usage(self, key: dict) -> list[dict]:
        return await self.admin.usage(key["email"], 100)


def settings_env(db_url: str, upstream, state_dir, **env: str) -> dict[str, str]:
    return {"AICREDITS_DATABASE_URL": db_url, "OPENAI_BASE_URL": upstream.base_url,
            "OPENAI_API_KEY": upstream.api_key, "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
            "AICREDITS_RETRIES": "0", "AICREDITS_STATE_DIR": str(state_dir), **env}


@asynccontextmanager
async def running(db_url: str, upstream, state_dir, admin_url: str | None = None, **env: str):
    """A started Gateway (as `serve` starts it: migrated, journal replayed, background tasks);
    its Admin (the test's view of the database) on `admin_url` (default: the gateway's)."""
    engine = make_engine(admin_url or db_url)
    await migrate(engine, admin_url or db_url)
    gw = Gateway(load_settings(settings_env(db_url, upstream, state_dir, **env)))
    await gw.startup()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gateway", timeout=60)
    try:
        yield InProc(gw, client, Admin(engine), engine)
    finally:
        await client.aclose()
        await gw.shutdown()
        await engine.dispose()
