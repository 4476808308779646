"""AICREDITS_MAX_REQUEST_SECONDS is a timer on every endpoint, and a running call's hold is never
swept: the key-limit reproduction (a stalled stream, a second call after the same headroom) on
SQLite and PostgreSQL, and the deadline on images, embeddings, speech and transcriptions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.api.media_helpers import make_wav
from tests.api.test_end_states import MESSAGES, output_estimate, prompt_estimate
from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario, split_content
from tests.inproc import running


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


STORY = "alpha beta gamma delta epsilon zeta eta theta"
LIMIT = 100_000   # 0.1 INR


def sse(raw: str) -> list:
    out = []
    for block in raw.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_a_stalled_stream_keeps_its_hold_and_is_cut_at_the_deadline(db_url, upstream, tmp_path):
    """The reproduction of a key ending above its limit: the hold used to expire while the stream
    stalled; the sweeper released it; a second call took the same headroom. Now the lease is
    renewed while the stream runs (a lease of 0.6 s is swept within 0.7 s of its last renewal),
    the second call is refused, and the stream is cut at the 2 s limit although no chunk comes."""
    env = {"AICREDITS_MAX_REQUEST_SECONDS": "2", "AICREDITS_HOLD_LEASE_SECONDS": "0.6"}
    async with running(db_url, upstream, tmp_path, **env) as g:
        key = await g.new_key(1_000_000, limit=LIMIT)
        upstream.enqueue(Scenario(content=STORY, stall_after=2, stall_seconds=20))
        body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 1500}
        started = time.monotonic()
        stream = asyncio.create_task(g.client.post("/v1/chat/completions", json=body, headers=key["headers"]))
        await asyncio.sleep(1.5)    # two lease lengths and more into the stall
        held = (await g.key_row(key))["held"]
        assert held > 0.8 * LIMIT, "the stalled stream's hold was swept while the stream ran"
        second = await g.client.post("/v1/chat/completions", headers=key["headers"], json={
            "model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 1000})
        assert second.status_code == 402, second.text
        assert "key's credit limit" in second.json()["error"]["message"]

        r = await stream
        elapsed = time.monotonic() - started
        assert r.status_code == 200
        assert 1.9 < elapsed < 3.5, f"the stream ended after {elapsed:.1f} s, not at the 2 s limit"
        events = sse(r.text)
        assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == split_content(STORY)[:2]
        assert (events[-2]["error"]["type"], events[-2]["error"]["code"]) == ("upstream_timeout", 504)
        assert events[-1] == "[DONE]"

        entry = {e["id"]: e for e in (await g.client.get("/api/models")).json()["data"]}["openai/gpt-4o-mini"]
        charge = expected_micros(entry, prompt_estimate(MESSAGES), output_estimate(split_content(STORY)[:2]))
        # the refused second call is a usage row too (status 402, no money; written within 0.5 s)
        for _ in range(40):
            rows = await g.usage(key)
            if len(rows) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted((r["end_state"], r["status"], r["cost"]) for r in rows) == [
            ("rejected", 402, 0), ("upstream_cut", 504, charge)]
        refused = next(r for r in rows if r["status"] == 402)
        assert (refused["hold"], refused["request_id"]) == (0, second.headers["x-request-id"])
        k = await g.key_row(key)
        assert (k["spent"], k["held"]) == (charge, 0)
        assert k["spent"] <= LIMIT
        assert await g.admin.verify() == []


MEDIA = {
    "images": ("/v1/images/generations", {"json": {"model": "dall-e-3", "prompt": "a cat"}}),
    "embeddings": ("/v1/embeddings", {"json": {"model": "text-embedding-3-small", "input": "hello"}}),
    "speech": ("/v1/audio/speech", {"json": {"model": "tts-1", "voice": "alloy", "input": "Hello"}}),
    "transcriptions": ("/v1/audio/transcriptions",
                       {"data": {"model": "whisper-1"}, "files": {"file": ("a.wav", make_wav(2))}}),
}


@pytest.mark.parametrize("endpoint", list(MEDIA))
async def test_every_endpoint_ends_at_the_deadline(endpoint, upstream, tmp_path):
    """These calls had no overall deadline (only the upstream timeout, 120 s by default)."""
    db = f"sqlite:///{tmp_path}/aicredits.db"
    async with running(db, upstream, tmp_path, AICREDITS_MAX_REQUEST_SECONDS="1") as g:
        key = await g.new_key(100_000_000)
        upstream.enqueue(Scenario(first_byte_delay=6))
        path, kwargs = MEDIA[endpoint]
        started = time.monotonic()
        r = await g.client.post(path, headers=key["headers"], **kwargs)
        elapsed = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json()["error"]["type"] == "upstream_timeout"
        assert "limit of 1 s" in r.json()["error"]["message"]
        assert elapsed < 3, f"ended after {elapsed:.1f} s"
        (row,) = await g.usage(key)
        assert (row["end_state"], row["status"], row["cost"]) == ("upstream_error", 504, 0)
        k = await g.key_row(key)
        assert (k["spent"], k["held"]) == (0, 0)
        assert await g.admin.verify() == []
