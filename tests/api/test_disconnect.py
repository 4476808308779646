"""A client that gives up before its answer (it closes its connection while the upstream hangs)
is noticed at once on every kind of call, as a dropped stream is: the upstream request is closed
(the fake upstream sees its connection go), the call is recorded as `client_disconnect` with status
499, nothing is charged and the hold is released. Runs against a real server on a socket: only a
real server sees a real disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import pytest

from tests.fakes.openai_upstream import Scenario

HI = [{"role": "user", "content": "Tell me a long story"}]
CALLS = {
    "chat": ("/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 200}),
    "chat stream": ("/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HI, "stream": True}),
    "embeddings": ("/embeddings", {"model": "openai/text-embedding-3-small", "input": "a long document"}),
    "responses": ("/responses", {"model": "openai/gpt-4o-mini", "input": "Tell me a long story"}),
}


def micros(inr: float) -> int:
    return round(inr * 1_000_000)


async def give_up(gw, upstream, key: str, path: str, payload: dict, rid: str) -> tuple[int, float]:
    """Call, and stop waiting once the upstream has the request (the call's hold is taken before
    it): the client's connection is closed. The most the wallet held meanwhile (read after the
    upstream had the request too), and when the client gave up."""
    headers = {"Authorization": f"Bearer {key}", "x-request-id": rid}
    most = 0
    async with httpx.AsyncClient(timeout=10) as client:
        call = asyncio.ensure_future(client.post(gw.v1 + path, json=payload, headers=headers))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not call.done():
            asked = bool(upstream.requests_to(path))
            most = max(most, micros((await asyncio.to_thread(gw.credits, key))["held"]))
            if asked:
                break
            await asyncio.sleep(0.02)
        assert not call.done(), "the call was answered, or failed, before the client gave up"
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    return most, time.monotonic()


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
    held, gave_up = asyncio.run(give_up(gateway, upstream, key, path, payload, rid))
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
