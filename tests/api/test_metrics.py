"""GET /metrics, scraped with prometheus-client's own text parser after known calls: exact request
counts by route, model, provider, status and cache; tokens and micro-INR charged equal to the usage
records; rate-limit refusals, upstream errors and the circuit breaker; holds outstanding read from
the database; the pool gauges; the bearer token. On SQLite and PostgreSQL, in process."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aicredits.services.admin import Admin
from aicredits.services.metering import FixedHold
from tests.fakes.openai_upstream import Scenario
from tests.inproc import InProcessGateway

ROUTE = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"
DEPLOYMENT = "openai:gpt-4o-mini"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
TOKEN = "metrics-" + uuid.uuid4().hex


def scrape(gw: InProcessGateway, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = gw.request("GET", "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """The sample with exactly these labels (0 when the series does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: dict, status: int, route: str = ROUTE, model: str = MODEL, provider: str = "openai",
             cache: str = "bypass") -> float:
    return value(samples, "aicredits_requests_total", route=route, model=model, provider=provider,
                 status=str(status), cache=cache)


def refused(samples: dict, status: int, route: str = ROUTE) -> float:
    return requests(samples, status, route, model="", provider="", cache="")


def chat(gw, key: dict, **extra) -> httpx.Response:
    return gw.post(ROUTE, key, json={**CHAT, **extra})


@pytest.fixture
def gw(tmp_path, upstream, db_url):
    g = InProcessGateway(tmp_path, {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": upstream.api_key,
                                    "AICREDITS_BREAKER_FAILURES": "1"}, db_url=db_url).start()
    yield g
    g.stop()


def test_a_scrape_counts_known_calls_exactly(gw, upstream):
    key = gw.create_key()
    email = f"rl-{uuid.uuid4().hex[:8]}@example.com"
    limited = {**gw.run(Admin(gw.engine).create_key(email, credits=10_000_000, rpm=1)), "email": email}

    # an upstream failure: the call is settled (nothing charged), the attempt counted, the breaker opens
    upstream.enqueue(Scenario(status=500))
    assert chat(gw, key).status_code == 502
    s = scrape(gw)
    assert requests(s, 502) == 1
    assert value(s, "aicredits_upstream_errors_total", provider="openai", deployment=DEPLOYMENT, status="502") == 1
    assert value(s, "aicredits_breaker_open", deployment=DEPLOYMENT) == 1
    assert value(s, "aicredits_breaker_failures", deployment=DEPLOYMENT) == 1

    # three answered calls (one streamed), one refused by the rpm limit, and requests that settle nothing
    assert chat(gw, key).status_code == 200
    assert chat(gw, key).status_code == 200
    upstream.enqueue(Scenario(prompt_tokens=40, completion_tokens=12))
    streamed = chat(gw, key, stream=True, stream_options={"include_usage": True})
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    assert chat(gw, limited).status_code == 200
    assert chat(gw, limited).status_code == 429
    assert chat(gw, {"key": "sk-" + "0" * 64}).status_code == 401
    assert gw.post(ROUTE, key, json={"model": "gpt-4o-mini"}).status_code == 400
    assert gw.request("GET", "/v1/no-such-thing").status_code == 404
    s = scrape(gw)

    assert requests(s, 200) == 4
    assert requests(s, 502) == 1
    assert refused(s, 401) == 1
    assert refused(s, 400) == 1
    assert refused(s, 429) == 1
    assert refused(s, 404, route="other") == 1
    assert value(s, "aicredits_requests_total", route="/metrics", model="", provider="", status="200",
                 cache="") == 1   # the first scrape (this one is counted once it is answered)
    assert value(s, "aicredits_rate_limited_total", route=ROUTE, limit="rpm") == 1
    assert value(s, "aicredits_upstream_errors_total", provider="openai", deployment=DEPLOYMENT, status="502") == 1
    assert value(s, "aicredits_breaker_open", deployment=DEPLOYMENT) == 0   # a success closed it
    assert value(s, "aicredits_overhead_seconds_count", route=ROUTE) == 5   # every settled call
    assert value(s, "aicredits_upstream_seconds_count", provider="openai", model=MODEL) == 5

    # tokens and money: exactly what the usage records (and so the ledger) say
    rows = gw.usage_rows(key) + gw.usage_rows(limited)
    # the refused call's own row (status 429, no tokens, no money) may be written by now or not
    assert len([r for r in rows if r["end_state"] != "rejected"]) == 5
    assert value(s, "aicredits_tokens_total", model=MODEL, provider="openai", direction="input") == \
        sum(r["prompt_tokens"] for r in rows) == 3 * 19 + 40
    assert value(s, "aicredits_tokens_total", model=MODEL, provider="openai", direction="output") == \
        sum(r["completion_tokens"] for r in rows) == 3 * 9 + 12
    charged = value(s, "aicredits_charged_micro_inr_total", route=ROUTE, model=MODEL, provider="openai")
    spent = gw.credits(key)["total_spent"] + gw.credits(limited)["total_spent"]
    assert charged == sum(r["cost"] for r in rows) > 0
    assert int(charged) == round(float(spent) * 1_000_000)
    assert value(s, "aicredits_holds_outstanding") == 0
    assert value(s, "aicredits_holds_outstanding_micro_inr") == 0
    assert value(s, "aicredits_processes") == 1


def test_holds_outstanding_are_read_from_the_database(gw):
    key = gw.create_key()
    auth = gw.run(gw.app.services.keys.authenticate(f"Bearer {key['key']}"))
    for amount in (1234, 5000):
        gw.run(gw.app.services.billing.reserve(uuid.uuid4().hex, auth, lambda avail, headroom, a=amount: FixedHold(a)))
    s = scrape(gw)
    assert value(s, "aicredits_holds_outstanding") == 2
    assert value(s, "aicredits_holds_outstanding_micro_inr") == 6234
    assert round(gw.credits(key)["held"] * 1_000_000) == 6234   # the wallet says the same


def test_the_database_pool_is_reported(gw, db_url):
    assert chat(gw, gw.create_key()).status_code == 200
    s = scrape(gw)
    if db_url.startswith("sqlite"):   # the one writer thread
        assert value(s, "aicredits_db_pool_connections") == 1
        assert value(s, "aicredits_db_pool_max") == 1
    else:
        assert value(s, "aicredits_db_pool_max") == 20
        assert 1 <= value(s, "aicredits_db_pool_connections") <= 20
        assert value(s, "aicredits_db_pool_acquires_total") >= 3   # key lookup, hold, settle
        assert value(s, "aicredits_db_pool_wait_seconds_total") > 0
    # no call runs between calls; the sweeper's or the scrape's own read of the holds may be on
    # the connection at that instant (SQLite: the one writer thread)
    assert value(s, "aicredits_db_pool_in_use") <= 1
    assert value(s, "aicredits_db_pool_waiting") == 0


@pytest.fixture
def guarded(tmp_path, upstream):
    g = InProcessGateway(tmp_path, {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": upstream.api_key,
                                    "AICREDITS_METRICS_TOKEN": TOKEN}).start()
    yield g
    g.stop()


def test_the_metrics_token_is_required_when_set(guarded):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        r = guarded.request("GET", "/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"
        assert TOKEN not in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
    s = scrape(guarded, TOKEN)
    assert refused(s, 401, route="/metrics") == 4
