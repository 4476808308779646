"""/health, /health/ready (database and Redis named) and /openapi.json."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import free_port
from tests.inproc import running


def test_health(gateway):
    r = httpx.get(gateway.base_url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["content-type"].startswith("application/json")


def test_ready_without_redis(gateway):
    r = httpx.get(gateway.base_url + "/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "db": "ok", "redis": "disabled"}


# readiness with Redis and on PostgreSQL: the same Gateway that `serve` runs, in this process
# (tests/inproc.py); the served `gateway` above proves /health and /health/ready over a socket
async def test_ready_with_redis(redis_url, fake_openai, tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", fake_openai, tmp_path, AICREDITS_REDIS_URL=redis_url,
                       AICREDITS_REDIS_PREFIX=f"health-{uuid.uuid4().hex[:8]}:") as g:
        r = await g.client.get("/health/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "db": "ok", "redis": "ok"}


async def test_ready_names_redis_when_it_is_down(fake_openai, tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", fake_openai, tmp_path,
                       AICREDITS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as g:
        assert (await g.client.get("/health")).status_code == 200   # liveness does not depend on Redis
        r = await g.client.get("/health/ready", timeout=15)
        assert r.status_code == 503
        body = r.json()
        assert body.get("redis") not in (None, "ok", "disabled"), body
        assert body.get("db") == "ok", body
        assert body.get("status") != "ready", body
        assert "redis" in r.text
        assert r.headers.get("retry-after")


@pytest.fixture
def pg_url(make_pg_db) -> str:
    return make_pg_db()


async def test_ready_on_postgresql(pg_url, fake_openai, tmp_path):
    async with running(pg_url, fake_openai, tmp_path) as g:
        r = await g.client.get("/health/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "db": "ok", "redis": "disabled"}


def test_openapi_json(gateway):
    r = httpx.get(gateway.base_url + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert isinstance(doc, dict)
    if "paths" in doc:      # the document itself is written elsewhere; while it is a stub, parsing is enough
        assert str(doc["openapi"]).startswith("3.")
        assert "/v1/chat/completions" in doc["paths"]
        assert "/v1/credits" in doc["paths"]
