"""Per-key rate limits (rpm, tpm) through the running gateway: in process memory, in Redis
(shared by every worker), with Redis down (fail-open), on SQLite and PostgreSQL. One worker is
served from a thread of the test process (`serve_gateway`, a real socket); the tests of several
workers and of what `serve` logs start real gateway processes."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import pytest
import redis

from tests.api.media_helpers import make_wav
from tests.conftest import free_port
from tests.fakes.openai_upstream import Scenario

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------- helpers
def make_key(gw, *, rpm: int | None = None, tpm: int | None = None, credits: str = "10") -> dict:
    email = f"rl-{uuid.uuid4().hex[:8]}@example.com"
    out = gw.create_key(credits=credits, email=email, rpm=rpm, tpm=tpm)
    assert (out["rpm"], out["tpm"]) == (rpm, tpm)
    return {**out, "email": email}


def auth(key: dict) -> dict:
    return {"Authorization": f"Bearer {key['key']}"}


def chat(gw, key: dict, **extra) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", json={**CHAT, **extra}, headers=auth(key), timeout=30)


def stream_chat(gw, key: dict) -> httpx.Response:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=body, headers=auth(key), timeout=30) as r:
        r.read()
    return r


def assert_429(r: httpx.Response, limit: str, value: int) -> int:
    """The reference's error shape, naming the limit and its value, with Retry-After (seconds)."""
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"}
    assert (err["type"], err["code"]) == ("rate_limit_error", 429)
    assert f"{limit} limit is {value} " in err["message"], err["message"]
    assert r.headers["x-request-id"]
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after
    assert f"Retry after {retry_after} s." in err["message"]
    return retry_after


def money(gw, key: dict) -> tuple:
    c = gw.credits(key["key"])
    return c["balance"], c["held"], c["total_spent"], c["key"]["spent"], c["key"]["held"]


def usage_rows(gw, key: dict) -> list[dict]:
    return gw.usage(key["email"])


def redis_env(redis_url: str) -> dict:
    """Redis for the counters, under a prefix no other test uses."""
    return {"AICREDITS_REDIS_URL": redis_url, "AICREDITS_REDIS_PREFIX": f"aicredits-test-{uuid.uuid4().hex[:10]}:"}


def redis_keys(redis_url: str, prefix: str) -> list[bytes]:
    return list(redis.Redis.from_url(redis_url).scan_iter(match=prefix + "*"))


@pytest.fixture(scope="module")
def redis_gateway(serve_gateway, redis_url):
    return serve_gateway(env=redis_env(redis_url))


@pytest.fixture(scope="module")
def dead_redis_gateway(serve_gateway):
    return serve_gateway(env={"AICREDITS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})


# ---------------------------------------------------------------- rpm
@pytest.mark.parametrize("backend", ["memory", "redis", "redis+postgresql"])
def test_rpm_admits_n_calls_and_refuses_the_next_without_charging(request, serve_gateway, upstream, backend):
    if backend == "memory":
        gw = request.getfixturevalue("gateway")
    elif backend == "redis":
        gw = request.getfixturevalue("redis_gateway")
    else:
        gw = serve_gateway(request.getfixturevalue("make_pg_db")(),
                           env=redis_env(request.getfixturevalue("redis_url")))
    key = make_key(gw, rpm=3)
    for left in (2, 1, 0):   # OpenAI's headers, counted by this backend (docs/rate-limits.md)
        r = chat(gw, key)
        assert r.status_code == 200
        assert (r.headers["x-ratelimit-limit-requests"], r.headers["x-ratelimit-remaining-requests"]) == \
            ("3", str(left))
        assert re.fullmatch(r"([0-9]+m)?[0-9.]+s", r.headers["x-ratelimit-reset-requests"])
        assert "x-ratelimit-limit-tokens" not in r.headers   # no tpm on this key
    before, forwarded = money(gw, key), len(upstream.requests)
    r = chat(gw, key)
    retry_after = assert_429(r, "rpm", 3)
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    listed = httpx.get(gw.v1 + "/models", headers=auth(key))   # not limited, but shows the limits
    assert listed.status_code == 200 and listed.headers["x-ratelimit-remaining-requests"] == "0"
    assert retry_after <= 120         # at most two windows of 60 s
    assert "3 requests per minute" in r.json()["error"]["message"]
    assert money(gw, key) == before   # nothing held, nothing charged
    assert len(upstream.requests) == forwarded   # nothing sent upstream
    assert chat(gw, key, stream=True).status_code == 429   # streams too, before any SSE
    # each refusal is a usage row with its status and no money (written within 0.5 s)
    deadline = time.time() + 5
    while len(rows := usage_rows(gw, key)) < 5 and time.time() < deadline:
        time.sleep(0.1)
    assert sorted((r["status"], r["end_state"], r["cost"]) for r in rows)[-2:] == [(429, "rejected", 0)] * 2
    assert [r["status"] for r in rows].count(200) == 3 and len(rows) == 5
    assert gw.verify() == []


def test_every_billable_endpoint_passes_the_limit(gateway, upstream):
    """chat (plain and stream), responses, embeddings, images, speech and transcriptions each
    count one request, and each is refused once the key's rpm is spent."""
    gw = gateway
    key = make_key(gw, rpm=7, credits="100")
    h = auth(key)
    wav = make_wav(1.0)
    calls = {
        "chat": lambda: chat(gw, key),
        "chat stream": lambda: stream_chat(gw, key),
        "responses": lambda: httpx.post(gw.v1 + "/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                                        headers=h, timeout=30),
        "embeddings": lambda: httpx.post(gw.v1 + "/embeddings",
                                         json={"model": "text-embedding-3-small", "input": "hi"},
                                         headers=h, timeout=30),
        "images": lambda: httpx.post(gw.v1 + "/images/generations",
                                     json={"model": "dall-e-2", "prompt": "a cat", "size": "256x256"},
                                     headers=h, timeout=30),
        "speech": lambda: httpx.post(gw.v1 + "/audio/speech",
                                     json={"model": "tts-1", "input": "hello", "voice": "alloy"},
                                     headers=h, timeout=30),
        "transcriptions": lambda: httpx.post(gw.v1 + "/audio/transcriptions", data={"model": "whisper-1"},
                                             files={"file": ("a.wav", wav, "audio/wav")}, headers=h, timeout=30),
    }
    for name, call in calls.items():
        assert call().status_code == 200, name
    before, forwarded = money(gw, key), len(upstream.requests)
    for name, call in calls.items():
        assert_429(call(), "rpm", 7)
    assert money(gw, key) == before and len(upstream.requests) == forwarded
    # reading credits and models is not a billable call: not limited
    assert httpx.get(gw.v1 + "/credits", headers=h).status_code == 200
    assert httpx.get(gw.v1 + "/models", headers=h).status_code == 200


# ---------------------------------------------------------------- tpm
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_tpm_counts_the_billed_tokens_of_settled_calls(request, upstream, backend):
    gw = request.getfixturevalue("gateway" if backend == "memory" else "redis_gateway")
    key = make_key(gw, tpm=50)
    upstream.enqueue(Scenario(status=500))                          # fails: nothing billed, no tokens
    assert chat(gw, key).status_code == 502
    upstream.enqueue(Scenario(prompt_tokens=19, completion_tokens=9))
    assert chat(gw, key).status_code == 200                         # 0 < 50
    upstream.enqueue(Scenario(prompt_tokens=19, completion_tokens=9))
    assert stream_chat(gw, key).status_code == 200                  # 28 < 50, streamed
    rows = usage_rows(gw, key)
    billed = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows if r["cost"] > 0)
    assert billed == 56
    before, forwarded = money(gw, key), len(upstream.requests)
    r = chat(gw, key)                                              # 56 >= 50
    assert_429(r, "tpm", 50)
    assert (r.headers["x-ratelimit-limit-tokens"], r.headers["x-ratelimit-remaining-tokens"]) == ("50", "0")
    assert "50 tokens per minute" in r.json()["error"]["message"]
    assert money(gw, key) == before and len(upstream.requests) == forwarded


def test_tpm_is_checked_before_the_call_not_cut_inside_it(gateway, upstream):
    """The call that crosses the limit completes and is billed in full; the next is refused."""
    key = make_key(gateway, tpm=10)
    upstream.enqueue(Scenario(prompt_tokens=400, completion_tokens=600))
    r = chat(gateway, key)
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 1000
    assert_429(chat(gateway, key), "tpm", 10)


def test_both_limits_on_one_key(gateway, upstream):
    key = make_key(gateway, rpm=5, tpm=30)
    upstream.enqueue(Scenario(prompt_tokens=20, completion_tokens=20))
    assert chat(gateway, key).status_code == 200
    assert_429(chat(gateway, key), "tpm", 30)        # 1 request of 5, but 40 tokens of 30


# ---------------------------------------------------------------- unlimited keys
def test_unlimited_keys_are_unaffected_and_never_reach_redis(serve_gateway, redis_url, upstream):
    env = redis_env(redis_url)
    prefix = env["AICREDITS_REDIS_PREFIX"]
    gw = serve_gateway(env=env)
    key = make_key(gw)
    for _ in range(25):
        assert chat(gw, key).status_code == 200
    assert redis_keys(redis_url, prefix) == []      # no counter: no round trip for an unlimited key
    limited = make_key(gw, rpm=100, tpm=100_000)
    assert chat(gw, limited).status_code == 200
    (counter,) = redis_keys(redis_url, prefix)
    assert counter == f"{prefix}ratelimit:{limited['id']}".encode()
    r = redis.Redis.from_url(redis_url)
    assert 0 < r.pttl(counter) <= 121_000           # expires after two windows (+1 s)
    fields = {k.decode(): int(v) for k, v in r.hgetall(counter).items()}
    assert fields["rc"] == 1 and fields["tc"] == 28  # one request, its 19 + 9 billed tokens


# ---------------------------------------------------------------- several workers share Redis
def _burst(gw, key: dict, n: int) -> list[int]:
    """n calls at once, each on its own connection."""
    statuses: list[int] = []
    start = threading.Barrier(n)

    def one() -> None:
        start.wait()
        with httpx.Client(timeout=30) as c:
            statuses.append(c.post(gw.v1 + "/chat/completions", json=CHAT, headers=auth(key)).status_code)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def _call_pids(gw) -> list[int]:
    pids = []
    for line in gw.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("logger") == "aicredits.calls" and rec.get("status") == 200:
            pids.append(rec["pid"])
    return pids


def test_limits_are_shared_by_every_worker_through_redis(start_gateway, redis_url, upstream):
    """Two worker processes, one key with rpm 10, 30 calls at once: exactly 10 pass in total. The
    calls that passed were served by both workers, so neither could have counted alone (with its
    own counters, a worker that got 15 or more of the 30 would pass 10 by itself)."""
    gw = start_gateway(env=redis_env(redis_url), workers=2)
    assert "counts per-key rate limits on its own" not in gw.log()
    for _ in range(3):   # the kernel picks the worker of each connection: a round that used one is retried
        seen = len(_call_pids(gw))
        statuses = _burst(gw, make_key(gw, rpm=10), 30)
        assert sorted(statuses) == [200] * 10 + [429] * 20
        deadline = time.monotonic() + 5   # the call log lines are written just after the responses
        while len(_call_pids(gw)) < seen + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(set(_call_pids(gw)[seen:])) == 2:
            return
    pytest.fail("every admitted call was served by one worker in three rounds")


def test_workers_without_redis_warn_that_each_counts_alone(start_gateway):
    gw = start_gateway(workers=2)
    assert "2 workers without AICREDITS_REDIS_URL: each worker counts per-key rate limits on its own" in gw.log()


# ---------------------------------------------------------------- the window frees
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_window_frees_after_retry_after(serve_gateway, request, upstream, backend):
    """AICREDITS_RATE_WINDOW_SECONDS=1 (documented): rpm counts per 1 s. After Retry-After
    seconds the next call passes."""
    env = {"AICREDITS_RATE_WINDOW_SECONDS": "1"}
    if backend == "redis":
        env.update(redis_env(request.getfixturevalue("redis_url")))
    gw = serve_gateway(env=env)
    key = make_key(gw, rpm=2)
    assert chat(gw, key).status_code == 200
    assert chat(gw, key).status_code == 200
    r = chat(gw, key)
    retry_after = assert_429(r, "rpm", 2)
    assert "2 requests per 1 s" in r.json()["error"]["message"]
    assert retry_after <= 2           # two windows at most
    time.sleep(retry_after)
    assert chat(gw, key).status_code == 200


# ---------------------------------------------------------------- Redis down: fail-open
def test_redis_down_admits_calls_uncounted_and_never_500s(dead_redis_gateway, upstream):
    gw = dead_redis_gateway
    key = make_key(gw, rpm=1, tpm=1)
    for _ in range(4):
        upstream.enqueue(Scenario(prompt_tokens=19, completion_tokens=9))
        r = chat(gw, key)
        assert r.status_code == 200, r.text
        assert float(r.headers["x-aicredits-cost"]) > 0
    assert stream_chat(gw, key).status_code == 200
    assert len(usage_rows(gw, key)) == 5
    assert gw.verify() == []
    assert "rate limits not enforced: Redis failed" in gw.log()
    ready = httpx.get(gw.base_url + "/health/ready")
    assert ready.status_code == 503 and ready.json()["redis"] == "unavailable"


def test_redis_down_costs_unlimited_keys_nothing(dead_redis_gateway, upstream):
    key = make_key(dead_redis_gateway)
    r = chat(dead_redis_gateway, key)
    assert r.status_code == 200 and float(r.headers["x-aicredits-overhead-ms"]) < 250


# ---------------------------------------------------------------- changing a key's limits
def test_keys_limit_reaches_a_running_gateway_within_a_second(gateway, upstream):
    key = make_key(gateway)
    for _ in range(3):
        assert chat(gateway, key).status_code == 200
    gateway.admin(lambda a: a.set_rate_limits(key["id"], rpm=1))   # what `aicredits keys limit` does
    time.sleep(1.1)                   # the key cache trusts an entry for 1 s
    assert chat(gateway, key).status_code == 200
    assert_429(chat(gateway, key), "rpm", 1)
    gateway.admin(lambda a: a.set_rate_limits(key["id"], rpm=None))
    time.sleep(1.1)
    assert chat(gateway, key).status_code == 200
