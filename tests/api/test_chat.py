"""Chat completions through the gateway with the official openai SDK as the client."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import openai
import pytest
from aiohttp import web

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


# ---------------------------------------------------------------- usage on the finish chunk (Gemini)
GEMINI = "google/gemini-2.0-flash"


class GeminiStream:
    """A tiny real SSE server shaped like Gemini's OpenAI-compatible endpoint: no role chunk, `usage` on the
    chunk that carries finish_reason, no `choices: []` usage chunk. Each request takes the next queued plan:
    dict(pieces, usage, running=usage on every chunk as a running total, done=send [DONE])."""

    def __init__(self) -> None:
        self.plans: list[dict] = []
        self.bodies: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> GeminiStream:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{self.port}/v1beta/openai"
        return self

    async def _astart(self) -> int:
        app = web.Application()
        app.router.add_post("/v1beta/openai/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        plan = self.plans.pop(0)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        usage, pieces = plan["usage"], plan["pieces"]
        with_usage = (body.get("stream_options") or {}).get("include_usage")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            choice = {"delta": {"content": piece, "role": "assistant"}, "index": 0}
            if last:
                choice["finish_reason"] = "stop"
            chunk = {"choices": [choice], "created": 1700000000, "id": "gem-abc123", "model": "gemini-2.0-flash",
                     "object": "chat.completion.chunk"}
            if with_usage and (last or plan.get("running")):
                chunk["usage"] = usage if last else {"completion_tokens": i + 1,
                                                     "prompt_tokens": usage["prompt_tokens"],
                                                     "total_tokens": usage["prompt_tokens"] + i + 1}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if plan.get("done", True):
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


@pytest.fixture(scope="module")
def gemini():
    server = GeminiStream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gemini_gw(serve_gateway, gemini):
    return serve_gateway(env={"GEMINI_BASE_URL": gemini.base_url, "GEMINI_API_KEY": "gemini-test-key"})


@pytest.fixture(scope="module")
def gemini_key(gemini_gw):
    return gemini_gw.create_key(credits="100")


def raw_stream(gw, key, **extra) -> list:
    """The gateway's SSE data payloads, parsed ("[DONE]" kept as the string)."""
    events = []
    with httpx.stream("POST", gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key['key']}"},
                      json={"model": GEMINI, "messages": [{"role": "user", "content": "count"}], "stream": True,
                            **extra}, timeout=20) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return events


PIECES = ["one ", "two ", "three"]
GEMINI_USAGE = {"completion_tokens": 3, "prompt_tokens": 50, "total_tokens": 53,
                "prompt_tokens_details": {"cached_tokens": 20}}


@pytest.mark.parametrize("running", [False, True], ids=["on-finish-chunk", "on-every-chunk"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_usage_on_the_finish_chunk_becomes_openais_usage_chunk(gemini_gw, gemini, gemini_key, include_usage,
                                                               running):
    want = expected_micros(gemini_gw.catalog()[GEMINI], 50, 3, cached=20)
    before = spent_micros(gemini_gw, gemini_key)
    gemini.plans.append({"pieces": PIECES, "usage": GEMINI_USAGE, "running": running})
    events = raw_stream(gemini_gw, gemini_key, stream_options={"include_usage": include_usage})
    assert gemini.bodies[-1]["stream_options"] == {"include_usage": True}   # the upstream is always asked
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = events[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "one two three"
    assert all("usage" not in c for c in chunks if c["choices"])   # relayed without the upstream's usage
    assert [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]][-1] == "stop"
    usage_chunks = [c for c in chunks if "usage" in c]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
        u = usage_chunks[0]
        assert u["choices"] == []
        assert (u["id"], u["model"], u["created"], u["object"]) == \
            ("gem-abc123", GEMINI, 1700000000, "chat.completion.chunk")   # the gateway's id, not Gemini's
        assert {k: v for k, v in u["usage"].items() if k != "cost"} == GEMINI_USAGE
        assert round(u["usage"]["cost"] * 1_000_000) == want
    else:
        assert usage_chunks == []
    assert spent_micros(gemini_gw, gemini_key) - before == want


def test_usage_on_the_finish_chunk_through_the_sdk(gemini_gw, gemini, gemini_key):
    c = openai.OpenAI(base_url=gemini_gw.v1, api_key=gemini_key["key"], max_retries=0)
    want = expected_micros(gemini_gw.catalog()[GEMINI], 50, 3, cached=20)
    for include_usage in (True, False):
        before = spent_micros(gemini_gw, gemini_key)
        gemini.plans.append({"pieces": PIECES, "usage": GEMINI_USAGE})
        chunks = list(c.chat.completions.create(model=GEMINI, stream=True, messages=[{"role": "user", "content": "x"}],
                                                stream_options={"include_usage": include_usage}))
        with_usage = [ch for ch in chunks if ch.usage is not None]
        if include_usage:
            assert len(with_usage) == 1 and with_usage[0].choices == [] and with_usage[0] is chunks[-1]
            assert with_usage[0].usage.prompt_tokens == 50 and with_usage[0].usage.completion_tokens == 3
            assert with_usage[0].usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
        else:
            assert with_usage == []
        assert spent_micros(gemini_gw, gemini_key) - before == want


def test_usage_on_the_finish_chunk_then_a_cut_is_charged_and_shown(gemini_gw, gemini, gemini_key):
    """The finish chunk with its usage arrived, then no [DONE]: a cut, charged the provider's usage; a client
    that asked for usage sees it before the error event, as it would see OpenAI's usage chunk."""
    want = expected_micros(gemini_gw.catalog()[GEMINI], 50, 3, cached=20)
    for include_usage in (True, False):
        before = spent_micros(gemini_gw, gemini_key)
        gemini.plans.append({"pieces": PIECES, "usage": GEMINI_USAGE, "done": False})
        events = raw_stream(gemini_gw, gemini_key, stream_options={"include_usage": include_usage})
        assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "error"
        usage_chunks = [e for e in events[:-1] if "usage" in e]
        if include_usage:
            assert len(usage_chunks) == 1 and usage_chunks[0] is events[-3] and usage_chunks[0]["choices"] == []
            assert round(usage_chunks[0]["usage"]["cost"] * 1_000_000) == want
        else:
            assert usage_chunks == []
        assert spent_micros(gemini_gw, gemini_key) - before == want


@pytest.mark.parametrize("body,param,message", [
    ([], None, "The request body must be a JSON object."),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model", "'model' is required."),
    ({"model": " ", "messages": [{"role": "user", "content": "hi"}]}, "model", "'model' must be a non-empty string."),
    ({"model": "gpt-4o-mini"}, "messages", "'messages' is required."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}, "hi"]}, "messages[1]",
     "messages[1] must be an object."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}, "messages[0].content",
     "messages[0].content must be a string or an array of parts."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream",
     "'stream' must be a boolean."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": "warm"}, "temperature",
     "'temperature' must be a number."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": {}}, "tools",
     "'tools' must be an array."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 0}, "n",
     "'n' must be between 1 and 128."),
])
def test_bad_input_is_a_400_naming_the_field(gateway, upstream, body, param, message):
    """The checks /v1/responses shares (services/validation.py): the same words, the field named."""
    poor = gateway.create_key(credits="1")
    before = len(upstream.chat_requests())
    r = httpx.post(gateway.v1 + "/chat/completions", json=body, headers={"Authorization": f"Bearer {poor['key']}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["type"], err["code"], err.get("param"), err["message"]) == ("invalid_request_error", 400, param, message)
    assert len(upstream.chat_requests()) == before
    assert gateway.credits(poor["key"])["total_spent"] == 0
