"""/health, /health/ready (database and Redis named) and /openapi.json."""

from __future__ import annotations

import httpx

from tests.conftest import free_port


def test_health(gateway):
    r = httpx.get(gateway.base_url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["content-type"].startswith("application/json")


def test_ready_without_redis(gateway):
    r = httpx.get(gateway.base_url + "/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "db": "ok", "redis": "disabled"}


def test_ready_with_redis(start_gateway, redis_url):
    gw = start_gateway(env={"AICREDITS_REDIS_URL": redis_url})
    try:
        r = httpx.get(gw.base_url + "/health/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "db": "ok", "redis": "ok"}
    finally:
        gw.stop()


def test_ready_names_redis_when_it_is_down(start_gateway):
    gw = start_gateway(env={"AICREDITS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        assert httpx.get(gw.base_url + "/health").status_code == 200   # liveness does not depend on Redis
        r = httpx.get(gw.base_url + "/health/ready", timeout=15)
        assert r.status_code == 503
        body = r.json()
        assert body.get("redis") not in (None, "ok", "disabled"), body
        assert body.get("db") == "ok", body
        assert body.get("status") != "ready", body
        assert "redis" in r.text
        assert r.headers.get("retry-after")
    finally:
        gw.stop()


def test_ready_on_postgresql(start_gateway, make_pg_db):
    gw = start_gateway(db_url=make_pg_db())
    try:
        r = httpx.get(gw.base_url + "/health/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "db": "ok", "redis": "disabled"}
    finally:
        gw.stop()


def test_openapi_json(gateway):
    r = httpx.get(gateway.base_url + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert isinstance(doc, dict)
    if "paths" in doc:      # the document itself is written elsewhere; while it is a stub, parsing is enough
        assert str(doc["openapi"]).startswith("3.")
        assert "/v1/chat/completions" in doc["paths"]
        assert "/v1/credits" in doc["paths"]
