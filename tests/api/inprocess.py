"""The gateway in this process: aicredits.app.Gateway (its startup() run, as the lifespan would)
served through httpx.ASGITransport on a private event loop, against a fake upstream that is a
real HTTP server. Money and usage rows are real (a fresh SQLite file); nothing is mocked.

Tests call it synchronously: every request runs to its end on the gateway's loop, so a stream
is read whole (ASGITransport collects the body) and its hold is settled when the call returns.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx

from aicredits.app import Gateway
from aicredits.services.admin import Admin
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate
from tests.conftest import MARKUP, USD_INR


class InProcessGateway:
    def __init__(self, workdir: Path, env: dict[str, str], db_url: str | None = None) -> None:
        self.url = db_url or f"sqlite:///{workdir}/aicredits.db"
        self.env = {"AICREDITS_DATABASE_URL": self.url, "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
                    "AICREDITS_RETRIES": "0", "AICREDITS_LOG_LEVEL": "WARNING", **env}
        self.loop = asyncio.new_event_loop()
        self.app: Gateway | None = None
        self.client: httpx.AsyncClient | None = None
        self.engine = None

    def run(self, aw):
        return self.loop.run_until_complete(aw)

    def start(self) -> InProcessGateway:
        async def go():
            self.engine = make_engine(self.url)
            await migrate(self.engine, self.url)
            self.app = Gateway(load_settings(self.env))
            await self.app.startup()
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                            base_url="http://gateway.test", timeout=30)
        self.run(go())
        return self

    def stop(self) -> None:
        async def go():
            await self.client.aclose()
            await self.app.shutdown()
            await self.engine.dispose()
        try:
            self.run(go())
        finally:
            self.loop.close()

    # ------------------------------------------------------------------ accounts
    def create_key(self, credits_micros: int = 100_000_000) -> dict:
        email = f"inproc-{uuid.uuid4().hex[:10]}@example.com"
        key = self.run(Admin(self.engine).create_key(email, credits=credits_micros))
        return {**key, "email": email}

    def usage_rows(self, key: dict) -> list[dict]:
        return self.run(Admin(self.engine).usage(key["email"], 1000))

    def usage_row(self, key: dict, request_id: str) -> dict:
        rows = [r for r in self.usage_rows(key) if r["request_id"] == request_id]
        assert len(rows) == 1, rows
        return rows[0]

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, key: dict | None = None, **kw) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key['key']}"
        return self.run(self.client.request(method, path, headers=headers, **kw))

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
