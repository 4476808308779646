"""Routing through a running gateway: weighted deployments, retries with backoff, fallback
chains (configured and per request), circuit breakers; one charge at the answering model's price."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import expected_micros, free_port
from tests.fakes.openai_upstream import FakeOpenAI, Scenario

CONFIG = """
[providers.primary]
kind = "openai_compatible"
base_url = "{a}"
api_key_env = "PRIMARY_KEY"

[providers.secondary]
kind = "openai_compatible"
base_url = "{b}"
api_key_env = "SECONDARY_KEY"

[[models]]
id = "pool/chat"
name = "Pool chat"
provider = "primary"
upstream_id = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 0.15
output_cost_per_1m = 0.60
deployments = [{{provider = "primary", weight = 1}}, {{provider = "secondary", weight = 1}}]
fallbacks = ["pool/backup"]

[[models]]
id = "pool/solo"
provider = "primary"
upstream_id = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 0.15
output_cost_per_1m = 0.60

[[models]]
id = "pool/backup"
provider = "secondary"
upstream_id = "gpt-4o"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 2.5
output_cost_per_1m = 10.0
"""


@pytest.fixture(scope="module")
def fakes():
    a = FakeOpenAI(api_key="sk-primary-upstream").start()
    b = FakeOpenAI(api_key="sk-secondary-upstream").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def routed(serve_gateway, fakes, tmp_path_factory):
    a, b = fakes
    path = tmp_path_factory.mktemp("cfg") / "aicredits.toml"
    path.write_text(CONFIG.format(a=a.base_url, b=b.base_url))
    return serve_gateway(env={"AICREDITS_CONFIG": str(path), "PRIMARY_KEY": a.api_key,
                              "SECONDARY_KEY": b.api_key, "AICREDITS_RETRIES": "2", "AICREDITS_RETRY_BASE_DELAY": "0.01",
                              "AICREDITS_BREAKER_FAILURES": "3", "AICREDITS_BREAKER_COOLDOWN": "60"})


@pytest.fixture
def clean(fakes):
    for f in fakes:
        f.reset()
    yield fakes
    for f in fakes:
        f.reset()


def _client(gw, key):
    return openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0)


def _usage(gw, key):
    return gw.usage(key["account"])


def _spent(gw, key):
    return round(gw.credits(key["key"])["total_spent"] * 10**6)


def test_weighted_deployments_share_the_load(routed, clean):
    a, b = clean
    key = routed.create_key(credits="50")
    c = _client(routed, key)
    for _ in range(30):
        c.chat.completions.create(model="pool/chat", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert len(a.chat_requests()) > 3 and len(b.chat_requests()) > 3
    assert len(a.chat_requests()) + len(b.chat_requests()) == 30
    deployments = {row["deployment"] for row in _usage(routed, key)}
    assert deployments == {"primary:gpt-4o-mini", "secondary:gpt-4o-mini"}


def test_retry_same_deployment_on_5xx_then_charge_once(routed, clean):
    a, _ = clean
    key = routed.create_key(credits="10")
    a.enqueue(Scenario(status=500), Scenario(status=503), Scenario(prompt_tokens=100, completion_tokens=20))
    resp = _client(routed, key).chat.completions.create(
        model="pool/solo", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert resp.usage.prompt_tokens == 100
    assert len(a.chat_requests()) == 3
    want = expected_micros(routed.catalog()["pool/solo"], 100, 20)
    assert _spent(routed, key) == want
    rows = _usage(routed, key)
    assert len(rows) == 1 and rows[0]["end_state"] == "completed"


def test_client_errors_are_not_retried(routed, clean):
    a, _ = clean
    key = routed.create_key(credits="10")
    a.enqueue(Scenario(status=400, error_type="invalid_request_error", error_message="bad temperature"))
    with pytest.raises(openai.BadRequestError) as info:
        _client(routed, key).chat.completions.create(
            model="pool/solo", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "bad temperature" in info.value.body["message"]
    assert len(a.chat_requests()) == 1
    assert _spent(routed, key) == 0


def test_request_level_models_fall_back_and_charge_the_answering_model(routed, clean):
    a, b = clean
    key = routed.create_key(credits="10")
    a.enqueue(*[Scenario(status=429, headers={"retry-after": "0"}) for _ in range(3)])
    b.enqueue(Scenario(prompt_tokens=30, completion_tokens=7))
    resp = _client(routed, key).chat.completions.create(
        model="pool/solo", max_tokens=20, messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["pool/backup"]})
    assert resp.usage.completion_tokens == 7
    assert b.chat_requests()[-1].body["model"] == "gpt-4o"
    assert "models" not in b.chat_requests()[-1].body
    assert b.chat_requests()[-1].headers["authorization"] == f"Bearer {b.api_key}"
    want = expected_micros(routed.catalog()["pool/backup"], 30, 7)
    assert _spent(routed, key) == want
    row = _usage(routed, key)[0]
    assert row["model"] == "pool/backup" and row["deployment"] == "secondary:gpt-4o"


def test_streaming_retries_before_the_first_byte(routed, clean):
    a, _ = clean
    key = routed.create_key(credits="10")
    a.enqueue(Scenario(status=502), Scenario(content="streamed fine"))
    chunks = list(_client(routed, key).chat.completions.create(
        model="pool/solo", max_tokens=20, stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "streamed fine"
    assert len(a.chat_requests()) == 2


def test_all_failing_returns_the_last_error_and_charges_nothing(routed, clean):
    a, _ = clean
    key = routed.create_key(credits="10")
    a.enqueue(*[Scenario(status=500) for _ in range(3)])
    with pytest.raises(openai.APIStatusError) as info:
        _client(routed, key).chat.completions.create(
            model="pool/solo", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert info.value.body["type"] == "upstream_error"
    assert _spent(routed, key) == 0
    assert routed.credits(key["key"])["held"] == 0


def test_breaker_opens_and_configured_fallback_serves(routed, clean):
    a, b = clean
    key = routed.create_key(credits="10")
    # every primary attempt fails: after 3 failures the breaker opens and primary is skipped
    a.enqueue(*[Scenario(status=503) for _ in range(50)])
    c = _client(routed, key)
    for _ in range(6):
        c.chat.completions.create(model="pool/chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    primary_calls = len(a.chat_requests())
    assert primary_calls <= 3
    for _ in range(4):
        c.chat.completions.create(model="pool/chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert len(a.chat_requests()) == primary_calls
    assert len(b.chat_requests()) >= 10


def test_hold_covers_the_dearest_model_of_the_chain(routed, clean):
    a, _ = clean
    entry_cheap = routed.catalog()["pool/solo"]
    assert entry_cheap["output_cost_per_1m"] < routed.catalog()["pool/backup"]["output_cost_per_1m"]
    # 1000 output tokens at gpt-4o prices (10 USD/1M) ~ 0.96 INR; at the cheap price ~ 0.06 INR
    key = routed.create_key(credits="0.5")
    with pytest.raises(openai.APIStatusError) as info:
        _client(routed, key).chat.completions.create(
            model="pool/solo", max_tokens=1000, messages=[{"role": "user", "content": "x"}],
            extra_body={"models": ["pool/backup"]})
    assert info.value.status_code == 402
    a.enqueue(Scenario(prompt_tokens=5, completion_tokens=5))
    _client(routed, key).chat.completions.create(
        model="pool/solo", max_tokens=1000, messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------- the retry rule and the deadline
TIMED = """
[providers.primary]
kind = "openai_compatible"
base_url = "{a}"
api_key_env = "PRIMARY_KEY"

[providers.secondary]
kind = "openai_compatible"
base_url = "{b}"
api_key_env = "SECONDARY_KEY"

[providers.dead]
kind = "openai_compatible"
base_url = "{dead}"
api_key_env = "PRIMARY_KEY"

[[models]]
id = "pool/solo"
provider = "primary"
upstream_id = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 0.15
output_cost_per_1m = 0.60
fallbacks = ["pool/backup"]

[[models]]
id = "pool/backup"
provider = "secondary"
upstream_id = "gpt-4o"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 2.5
output_cost_per_1m = 10.0

[[models]]
id = "pool/dead"
provider = "dead"
upstream_id = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 1000
input_cost_per_1m = 0.15
output_cost_per_1m = 0.60
fallbacks = ["pool/backup"]
"""
DEADLINE = 1.5   # AICREDITS_UPSTREAM_TIMEOUT of the timed gateway: every attempt of a call within it


@pytest.fixture(scope="module")
def timed(serve_gateway, fakes, tmp_path_factory):
    """Retries on (3 more per deployment), a 1.5 s upstream timeout, a 1 s body-read limit; `pool/dead`
    points at a closed port."""
    a, b = fakes
    path = tmp_path_factory.mktemp("cfg") / "aicredits.toml"
    path.write_text(TIMED.format(a=a.base_url, b=b.base_url, dead=f"http://127.0.0.1:{free_port()}/v1"))
    return serve_gateway(env={"AICREDITS_CONFIG": str(path), "PRIMARY_KEY": a.api_key, "SECONDARY_KEY": b.api_key,
                              "AICREDITS_RETRIES": "3", "AICREDITS_RETRY_BASE_DELAY": "0.01",
                              "AICREDITS_BREAKER_FAILURES": "1000", "AICREDITS_UPSTREAM_TIMEOUT": str(DEADLINE),
                              "AICREDITS_STREAM_IDLE_TIMEOUT": "1"})


def _post(gw, key, **body):
    t = time.monotonic()
    r = httpx.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key['key']}"}, timeout=30,
                   json={"model": "pool/solo", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}],
                         **body})
    return r, time.monotonic() - t


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_hangs_is_asked_once_and_never_again_elsewhere(timed, clean, stream):
    a, b = clean
    key = timed.create_key(credits="10")
    a.enqueue(*[Scenario(hang=True) for _ in range(5)])
    r, took = _post(timed, key, stream=stream)
    assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout", r.text
    assert len(a.chat_requests()) == 1      # it may be working on it, and billing it: not sent again
    assert len(b.chat_requests()) == 0      # nor to the fallback model
    assert took < DEADLINE + 1.0
    assert _spent(timed, key) == 0 and timed.credits(key["key"])["held"] == 0


def test_an_answer_that_drips_after_its_200_is_not_asked_again(timed, clean):
    a, b = clean
    key = timed.create_key(credits="10")
    a.enqueue(*[Scenario(drip=0.3) for _ in range(5)])
    r, took = _post(timed, key)
    assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout", r.text
    assert len(a.chat_requests()) == 1 and len(b.chat_requests()) == 0
    assert took < DEADLINE + 1.0
    assert _spent(timed, key) == 0 and _usage(timed, key)[0]["end_state"] == "upstream_error"


def test_refusals_before_any_body_are_retried(timed, clean):
    a, b = clean
    key = timed.create_key(credits="10")
    a.enqueue(Scenario(status=429, headers={"retry-after": "0"}), Scenario(status=503, headers={"retry-after": "0"}),
              Scenario(status=500), Scenario(prompt_tokens=50, completion_tokens=5))
    r, _ = _post(timed, key)
    assert r.status_code == 200, r.text
    assert len(a.chat_requests()) == 4 and len(b.chat_requests()) == 0
    assert _spent(timed, key) == expected_micros(timed.catalog()["pool/solo"], 50, 5)


def test_a_refused_connection_is_retried_then_falls_back(timed, clean):
    _, b = clean
    key = timed.create_key(credits="10")
    b.enqueue(Scenario(prompt_tokens=30, completion_tokens=7))
    r, _ = _post(timed, key, model="pool/dead")
    assert r.status_code == 200, r.text
    assert len(b.chat_requests()) == 1
    row = _usage(timed, key)[0]
    assert row["model"] == "pool/backup" and row["end_state"] == "completed"
    assert "attempt 4 on dead:gpt-4o-mini failed: Could not reach the dead provider." in timed.log()


def test_one_deadline_bounds_every_attempt(timed, clean):
    """Slow refusals: each 503 takes 0.6 s, so the 4 attempts allowed would take 2.4 s; the third
    attempt is cut at the call's 1.5 s deadline, and the fallback is never started."""
    a, b = clean
    key = timed.create_key(credits="10")
    a.enqueue(*[Scenario(status=503, first_byte_delay=0.6, headers={"retry-after": "0"}) for _ in range(5)])
    r, took = _post(timed, key)
    assert r.status_code == 504, r.text
    assert took < DEADLINE + 0.6
    assert 2 <= len(a.chat_requests()) <= 3 and len(b.chat_requests()) == 0
    assert _spent(timed, key) == 0
