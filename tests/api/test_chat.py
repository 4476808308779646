"""Chat completions through the gateway with the official openai SDK as the client."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario


def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0)


def spent_micros(gateway, key) -> int:
    return round(gateway.credits(key["key"])["total_spent"] * 1_000_000)


def test_non_streaming_charges_exactly_the_catalog_price(gateway, upstream, key):
    upstream.enqueue(Scenario(content="Hi!", prompt_tokens=1234, completion_tokens=567))
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hi!"
    assert resp.usage.prompt_tokens == 1234
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], 1234, 567)
    assert spent_micros(gateway, key) == want
    assert raw.headers["x-aicredits-cost"] == f"{want // 10**6}.{want % 10**6:06d}"
    assert raw.headers["x-aicredits-cache"] == "bypass"
    assert float(raw.headers["x-aicredits-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"]
    sent = upstream.chat_requests()[-1]
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {upstream.api_key}"
    assert key["key"] not in sent.raw.decode() and key["key"] not in str(sent.headers)


def test_streaming_usage_chunk_carries_cost_only_when_asked(gateway, upstream, key):
    c = client(gateway, key)
    upstream.enqueue(Scenario(content="one two three", prompt_tokens=50, completion_tokens=3))
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "count"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "one two three"
    usage = chunks[-1].usage
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], 50, 3)
    assert usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    assert upstream.chat_requests()[-1].body["stream_options"] == {"include_usage": True}
    upstream.enqueue(Scenario(content="no usage please"))
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))
    assert all(ch.usage is None for ch in chunks)
    assert upstream.chat_requests()[-1].body["stream_options"] == {"include_usage": True}
