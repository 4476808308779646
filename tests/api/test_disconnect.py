"""A client that gives up before its answer (an httpx read timeout while the upstream hangs) is
noticed at once on every kind of call, as a dropped stream is: the upstream request is closed (the
fake upstream sees its connection go), the call is recorded as `client_disconnect` with status 499,
nothing is charged and the hold is released. Runs against a real gateway process: only a real
server sees a real disconnect."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes.openai_upstream import Scenario

HI = [{"role": "user", "content": "Tell me a long story"}]
GIVE_UP = 1.0   # seconds the client waits for its answer
CALLS = {
    "chat": ("/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 200}),
    "chat stream": ("/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HI, "stream": True}),
    "embeddings": ("/embeddings", {"model": "openai/text-embedding-3-small", "input": "a long document"}),
    "responses": ("/responses", {"model": "openai/gpt-4o-mini", "input": "Tell me a long story"}),
}


def micros(inr: float) -> int:
    return round(inr * 1_000_000)


def give_up(gw, key: str, path: str, payload: dict, rid: str) -> None:
    """Call, and stop waiting after GIVE_UP seconds (the connection is closed)."""
    headers = {"Authorization": f"Bearer {key}", "x-request-id": rid}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.v1 + path, json=payload, headers=headers, timeout=httpx.Timeout(10, read=GIVE_UP))


def held_while(gw, key: str, busy) -> int:
    """The most the wallet held while `busy` (a future) ran."""
    most = 0
    while not busy.done():
        most = max(most, micros(gw.credits(key)["held"]))
        time.sleep(0.05)
    busy.result()
    return most


def usage_row(gw, email: str, rid: str, wait: float = 3.0) -> dict:
    deadline = time.time() + wait
    while True:
        rows = [r for r in gw.usage(email) if r["request_id"] == rid]
        if rows or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("what", list(CALLS))
def test_a_client_that_gives_up_cancels_the_upstream_and_pays_nothing(gateway, upstream, what):
    path, payload = CALLS[what]
    email = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    key = gateway.create_key(credits="10", email=email)["key"]
    upstream.enqueue(Scenario(hang=True))
    rid = "gone-" + uuid.uuid4().hex
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(give_up, gateway, key, path, payload, rid)
        held = held_while(gateway, key, busy)
    gave_up = time.monotonic()
    assert held > 0, "the call took no hold while it waited"

    # the gateway closed its upstream request at once: the provider stops working on it
    assert upstream.wait_disconnect(timeout=3.0), "the upstream request was left running"
    assert time.monotonic() - gave_up < 1.0
    assert len(upstream.requests_to(path)) == 1

    # nothing charged, the hold released, the call recorded as the client's disconnect
    credits = gateway.credits(key)
    assert credits["held"] == 0 and credits["key"]["held"] == 0
    assert credits["total_spent"] == 0 and micros(credits["balance"]) == 10_000_000
    row = usage_row(gateway, email, rid)
    assert (row["end_state"], row["status"], row["cost"]) == ("client_disconnect", 499, 0), row
    assert gateway.verify() == []


def test_a_client_that_waits_is_answered_and_charged(gateway, upstream):
    """The watcher changes nothing for a client that stays: a slow answer is delivered and billed."""
    key = gateway.create_key(credits="10")["key"]
    upstream.enqueue(Scenario(first_byte_delay=0.5, prompt_tokens=40, completion_tokens=10))
    r = httpx.post(gateway.v1 + "/chat/completions", json=CALLS["chat"][1],
                   headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 10
    credits = gateway.credits(key)
    assert credits["held"] == 0 and credits["total_spent"] > 0
