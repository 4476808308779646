"""Embeddings through the gateway with the official openai SDK (which asks for base64)."""

from __future__ import annotations

import openai

from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario, embedding_vector


def test_embeddings_base64_and_float_charge_input_tokens(gateway, upstream, key):
    c = openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0)
    upstream.enqueue(Scenario(prompt_tokens=4))
    raw = c.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input=["hello", "world"])
    resp = raw.parse()
    assert [d.embedding for d in resp.data] == [embedding_vector("hello"), embedding_vector("world")]
    assert upstream.requests[-1].body["encoding_format"] == "base64"
    entry = gateway.catalog()["openai/text-embedding-3-small"]
    entry = {**entry, "output_cost_per_1m": 0}
    want = expected_micros(entry, 4, 0)
    assert raw.headers["x-aicredits-cost"] == f"{want // 10**6}.{want % 10**6:06d}"
    upstream.enqueue(Scenario(prompt_tokens=1))
    resp = c.embeddings.create(model="text-embedding-3-small", input="hi", encoding_format="float")
    assert resp.data[0].embedding == embedding_vector("hi")
    spent = round(gateway.credits(key["key"])["total_spent"] * 10**6)
    assert spent == want + expected_micros(entry, 1, 0)


def test_embeddings_model_on_chat_and_chat_model_on_embeddings_are_400(gateway, key):
    c = openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0)
    try:
        c.embeddings.create(model="gpt-4o-mini", input="x")
    except openai.BadRequestError as exc:
        assert exc.body["type"] == "invalid_request_error"
    else:
        raise AssertionError("expected 400")
