"""The gateway in this process, for every test that needs no real process (signals, kill -9,
workers and the CLI keep their subprocess, tests/conftest.py `start_gateway`).

aicredits.app.Gateway is started as `serve` starts it (migrated database, settle journal
replayed, lease renewals and the sweeper running) and served through httpx.ASGITransport,
against the fake upstreams (real HTTP servers on 127.0.0.1) and a real database. Nothing is
mocked. Two ways to drive it:

- an async test: `async with running(db_url, upstream, state_dir, **env) as g:` gives an
  `InProc` in the test's event loop (`g.client` is an httpx.AsyncClient);
- a sync test (hypothesis, module-scoped fixtures): `InProcessGateway(workdir, env).start()`
  runs the same `InProc` on a private event loop; every request runs to its end there, so a
  stream is read whole and its hold is settled when the call returns.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

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
        """A key on a new account with `credits` micro-INR: {key, id, email, headers, ...}."""
        email = f"inproc-{uuid.uuid4().hex[:10]}@example.com"
        out = await self.admin.create_key(email, name="test", credits=credits, limit=limit)
        return {**out, "email": email, "headers": {"Authorization": f"Bearer {out['key']}"}}

    async def key_row(self, key: dict) -> dict:
        (row,) = [r for r in await self.admin.list_keys(key["email"]) if r["id"] == key["id"]]
        return row

    async def usage(self, key: dict, limit: int = 1000) -> list[dict]:
        return await self.admin.usage(key["email"], limit)

    async def close(self) -> None:
        await self.client.aclose()
        await self.gw.shutdown()
        await self.engine.dispose()


def base_env(db_url: str, state_dir, **env: str) -> dict[str, str]:
    """The settings every in-process gateway starts from: the suite's rate and markup, retries off
    (an upstream error is the call's answer unless a test turns them on)."""
    return {"AICREDITS_DATABASE_URL": db_url, "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
            "AICREDITS_RETRIES": "0", "AICREDITS_STATE_DIR": str(state_dir), **env}


def upstream_env(upstream) -> dict[str, str]:
    """The settings that point the `openai` provider at a fake upstream."""
    return {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": upstream.api_key}


async def start(env: dict[str, str], admin_url: str | None = None) -> InProc:
    """A started Gateway with these settings; its Admin (the test's view of the database) on
    `admin_url` (default: the gateway's database)."""
    url = admin_url or env["AICREDITS_DATABASE_URL"]
    engine = make_engine(url)
    await migrate(engine, url)
    gw = Gateway(load_settings(env))
    await gw.startup()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gateway.test", timeout=60)
    return InProc(gw, client, Admin(engine), engine)


@asynccontextmanager
async def running(db_url: str, upstream, state_dir, admin_url: str | None = None, **env: str):
    """A started gateway against the fake OpenAI upstream, shut down after the block."""
    g = await start(base_env(db_url, state_dir, **upstream_env(upstream), **env), admin_url)
    try:
        yield g
    finally:
        await g.close()


class InProcessGateway:
    """An InProc on a private event loop, for sync tests; on `db_url` (SQLite in `workdir` when not
    given). `env` is added to the base settings (name the upstreams there: `upstream_env(fake)`)."""

    def __init__(self, workdir: Path, env: dict[str, str], db_url: str | None = None) -> None:
        self.url = db_url or f"sqlite:///{workdir}/aicredits.db"
        self.env = base_env(self.url, workdir, **env)
        self.loop = asyncio.new_event_loop()
        self.g: InProc | None = None

    def run(self, aw):
        return self.loop.run_until_complete(aw)

    def start(self) -> InProcessGateway:
        self.g = self.run(start(self.env))
        return self

    def stop(self) -> None:
        try:
            self.run(self.g.close())
        finally:
            self.loop.close()

    @property
    def app(self) -> Gateway:
        return self.g.gw

    @property
    def engine(self):
        return self.g.engine

    # ------------------------------------------------------------------ accounts
    def create_key(self, credits_micros: int = 100_000_000, limit: int | None = None) -> dict:
        return self.run(self.g.new_key(credits_micros, limit))

    def usage_rows(self, key: dict) -> list[dict]:
        return self.run(self.g.usage(key))

    def usage_row(self, key: dict, request_id: str) -> dict:
        rows = [r for r in self.usage_rows(key) if r["request_id"] == request_id]
        assert len(rows) == 1, rows
        return rows[0]

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, key: dict | None = None, **kw) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key['key']}"
        return self.run(self.g.client.request(method, path, headers=headers, **kw))

    def post(self, path: str, key: dict | None, **kw) -> httpx.Response:
        return self.request("POST", path, key, **kw)

    def credits(self, key: dict) -> dict:
        r = self.request("GET", "/v1/credits", key)
        assert r.status_code == 200, r.text
        return r.json()

    def catalog(self) -> dict[str, dict]:
        return {e["id"]: e for e in self.request("GET", "/api/models").json()["data"]}


def sse_data(text: str) -> list:
    """The `data:` payloads of an SSE body, parsed ("[DONE]" kept as the string)."""
    out: list = []
    for line in text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def sse_events(text: str) -> list[tuple[str | None, dict]]:
    """(event name, parsed data) of a Responses SSE body."""
    out = []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
        if data is not None:
            out.append((name, data))
    return out
