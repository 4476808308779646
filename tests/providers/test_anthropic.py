"""The Anthropic provider through a running gateway: the official `openai` SDK as the client on
`anthropic/claude-sonnet-4.6`, the fake Anthropic upstream (tests/fakes/anthropic_upstream.py) behind it."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from fractions import Fraction
from types import SimpleNamespace

import httpx
import openai
import pytest

from aicredits.errors import InvalidRequest
from aicredits.providers.anthropic_translate import to_anthropic
from tests.conftest import MARKUP, USD_INR
from tests.fakes.anthropic_upstream import FakeAnthropic, Scenario, split_text

MODEL = "anthropic/claude-sonnet-4.6"
UPSTREAM = "claude-sonnet-4-6"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def fake():
    f = FakeAnthropic().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(serve_gateway, fake):
    return serve_gateway(env={"ANTHROPIC_API_KEY": fake.api_key, "ANTHROPIC_BASE_URL": fake.base_url})


@pytest.fixture
def up(fake):
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key(credits="1000")


@pytest.fixture
def bill(gw, key):
    """Micro-INR charged to the key since the test began."""
    start = spent(gw, key)
    return lambda: spent(gw, key) - start


def client(gw, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0, timeout=20)


def spent(gw, key) -> int:
    return round(gw.credits(key["key"])["total_spent"] * 1_000_000)


def expected(entry: dict, *, inp: int, out: int, read: int = 0, w5: int = 0, w1h: int = 0) -> int:
    """docs/billing.md, "The charge formula": four input buckets + output, x rate x (1 + markup), rounded up once (micro-INR)."""
    def price(k: str) -> Fraction:
        return Fraction(Decimal(repr(entry[k])))
    usd_micros = (inp * price("input_cost_per_1m") + read * price("cache_read_cost_per_1m")
                  + w5 * price("cache_write_cost_per_1m") + w1h * price("cache_write_1h_cost_per_1m")
                  + out * price("output_cost_per_1m"))
    micros = usd_micros * Fraction(Decimal(USD_INR)) * (1 + Fraction(Decimal(MARKUP)))
    return -((-micros.numerator) // micros.denominator)


def sse(gw, key, body: dict) -> tuple[list[dict], bool]:
    """The gateway's raw SSE data events (parsed) and whether [DONE] ended them."""
    events, done = [], False
    with httpx.stream("POST", gw.v1 + "/chat/completions", json={"model": MODEL, "stream": True, **body},
                      headers={"Authorization": f"Bearer {key['key']}"}, timeout=20) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                if line == "data: [DONE]":
                    done = True
                else:
                    events.append(json.loads(line[6:]))
    return events, done


# ---------------------------------------------------------------------------- request translation
def test_system_developer_multiturn_image_translated(gw, up, key, bill):
    up.enqueue(Scenario(text="A cat.", input_tokens=50, output_tokens=3))
    resp = client(gw, key).chat.completions.create(
        model=MODEL, max_tokens=321, temperature=0.3, top_p=0.9, stop="END", user="user-123", seed=7,
        frequency_penalty=0.5, presence_penalty=0.1, logprobs=False, metadata={"k": "v"}, store=False,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "First question"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]},
            {"role": "assistant", "content": "It is a cat."},
            {"role": "user", "content": "Thanks", "name": "bob"},
        ])
    rec = up.message_requests()[-1]
    assert rec.body == {
        "model": UPSTREAM, "max_tokens": 321, "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "First question"}, {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": "It is a cat."},
            {"role": "user", "content": "Thanks"}],
        "stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.9, "metadata": {"user_id": "user-123"}}
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == up.api_key and rec.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in rec.headers
    assert key["key"] not in rec.raw.decode() and key["key"] not in str(rec.headers)
    assert resp.choices[0].message.content == "A cat." and resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None and resp.object == "chat.completion"
    assert resp.model == MODEL and resp.id.startswith("msg_")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (50, 3, 53)
    assert bill() == expected(gw.catalog()[MODEL], inp=50, out=3)


def test_max_tokens_forms(gw, up, key):
    c = client(gw, key)
    c.chat.completions.create(model=MODEL, messages=HI, max_completion_tokens=77, temperature=1.7)
    body = up.last_body()
    assert body["max_tokens"] == 77 and body["temperature"] == 1.0   # clamped to Anthropic's 0..1
    c.chat.completions.create(model=MODEL, messages=HI)   # the gateway injects what the wallet affords
    injected = up.last_body()["max_tokens"]
    assert isinstance(injected, int) and 1 <= injected <= gw.catalog()[MODEL]["max_output_tokens"]


def test_default_max_tokens_is_the_catalog_cap():
    target = SimpleNamespace(upstream_id=UPSTREAM, spec=SimpleNamespace(max_output_tokens=64000))
    body, json_mode, ttl = to_anthropic({"messages": HI}, target)
    assert body == {"model": UPSTREAM, "max_tokens": 64000, "messages": HI}
    assert (json_mode, ttl) == (False, None)


@pytest.mark.parametrize("bad,param", [
    ({"n": 2}, "n"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio",
                                                  "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"cache": {"ttl": "2h"}}, "cache.ttl"),
    ({"cache": "yes"}, "cache"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
])
def test_untranslatable_requests_are_400_and_never_forwarded(gw, up, key, bill, bad, param):
    r = httpx.post(gw.v1 + "/chat/completions", json={"model": MODEL, "messages": HI, **bad},
                   headers={"Authorization": f"Bearer {key['key']}"}, timeout=20)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == 400 and err.get("param") == param
    assert up.message_requests() == [] and bill() == 0


# ---------------------------------------------------------------------------- tools
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
    {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
    {"role": "user", "content": "And tomorrow?"},
]
CALLS = [{"id": "toolu_3", "name": "get_weather", "input": {"city": "Paris", "day": "tomorrow"}},
         {"id": "toolu_4", "name": "get_time", "input": {}}]


def test_tools_and_tool_results_round_trip(gw, up, key):
    up.enqueue(Scenario(text="Checking.", tool_uses=CALLS, input_tokens=80, output_tokens=30))
    resp = client(gw, key).chat.completions.create(model=MODEL, max_tokens=200, messages=TOOL_TURNS,
                                                   tools=[WEATHER, CLOCK])
    body = up.last_body()
    assert body["tools"] == [
        {"name": "get_weather", "description": "Current weather for a city",
         "input_schema": WEATHER["function"]["parameters"]},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in body
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
            {"type": "text", "text": "And tomorrow?"}]}]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    assert [(t.id, t.type, t.function.name, json.loads(t.function.arguments)) for t in choice.message.tool_calls] == \
        [("toolu_3", "function", "get_weather", {"city": "Paris", "day": "tomorrow"}),
         ("toolu_4", "function", "get_time", {})]


def test_streamed_tool_call_fragments_accumulate(gw, up, key):
    up.enqueue(Scenario(text="Checking.", tool_uses=CALLS, pings=3))
    chunks = list(client(gw, key).chat.completions.create(model=MODEL, max_tokens=200, messages=TOOL_TURNS,
                                                          tools=[WEATHER, CLOCK], stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    calls: dict[int, dict] = {}
    fragments = 0
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            if tc.id:
                assert tc.type == "function" and tc.function.arguments == "" and slot["id"] == tc.id
            elif tc.function.arguments:
                slot["args"] += tc.function.arguments
                fragments += 1
    assert sorted(calls) == [0, 1]
    assert (calls[0]["id"], calls[0]["name"], json.loads(calls[0]["args"])) == \
        ("toolu_3", "get_weather", {"city": "Paris", "day": "tomorrow"})
    assert (calls[1]["id"], calls[1]["name"], json.loads(calls[1]["args"])) == ("toolu_4", "get_time", {})
    assert fragments >= 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("choice,parallel,want", [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "get_weather"}}, False,
     {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
])
def test_tool_choice_forms(gw, up, key, choice, parallel, want):
    kw = {}
    if choice is not None:
        kw["tool_choice"] = choice
    if parallel is not None:
        kw["parallel_tool_calls"] = parallel
    client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=HI, tools=[WEATHER, CLOCK], **kw)
    body = up.last_body()
    assert body["tool_choice"] == want
    assert "parallel_tool_calls" not in body


# ---------------------------------------------------------------------------- stop and finish reasons
def test_stop_sequences(gw, up, key):
    up.enqueue(Scenario(text="one two", stop_reason="stop_sequence", stop_sequence="END"))
    resp = client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=HI,
                                                   stop=["END", "  ", "STOP"])
    assert up.last_body()["stop_sequences"] == ["END", "STOP"]   # whitespace-only dropped (Anthropic refuses it)
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stop_reason,finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reason_mapping(gw, up, key, stop_reason, finish, stream):
    tools = [{"id": "toolu_9", "name": "get_time", "input": {}}] if stop_reason == "tool_use" else None
    up.enqueue(Scenario(text="x y", stop_reason=stop_reason, tool_uses=tools))
    c = client(gw, key)
    if stream:
        chunks = list(c.chat.completions.create(model=MODEL, max_tokens=50, messages=HI, tools=[CLOCK], stream=True))
        got = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert got == [finish]
    else:
        resp = c.chat.completions.create(model=MODEL, max_tokens=50, messages=HI, tools=[CLOCK])
        assert resp.choices[0].finish_reason == finish


# ---------------------------------------------------------------------------- JSON mode
@pytest.mark.parametrize("rf,schema", [
    ({"type": "json_object"}, {"type": "object", "additionalProperties": True, "properties": {}}),
    ({"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
     {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
])
def test_json_mode(gw, up, key, rf, schema):
    answer = {"a": 1, "b": ["x", "y"]}
    c = client(gw, key)
    up.enqueue(Scenario(text="", tool_uses=[{"id": "toolu_j", "name": "json_tool_call", "input": answer}]))
    resp = c.chat.completions.create(model=MODEL, max_tokens=100, messages=HI, response_format=rf)
    body = up.last_body()
    assert body["tools"] == [{"name": "json_tool_call", "description": "Respond with a JSON object that is the answer.",
                              "input_schema": schema}]
    assert body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    assert "response_format" not in body
    msg = resp.choices[0].message
    assert json.loads(msg.content) == answer and msg.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"

    up.enqueue(Scenario(text="", tool_uses=[{"id": "toolu_j", "name": "json_tool_call", "input": answer}]))
    chunks = list(c.chat.completions.create(model=MODEL, max_tokens=100, messages=HI, response_format=rf,
                                            stream=True))
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
    assert len(pieces) >= 3 and json.loads("".join(pieces)) == answer
    assert all(not (ch.choices and ch.choices[0].delta.tool_calls) for ch in chunks)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["stop"]


# ---------------------------------------------------------------------------- streaming and cache usage
def test_stream_text_with_usage_and_cost(gw, up, key, bill):
    up.enqueue(Scenario(text="one two three", thinking="let me think", input_tokens=40, output_tokens=3))
    chunks = list(client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=HI, stream=True,
                                                          stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == \
        split_text("one two three")
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and (usage.prompt_tokens, usage.completion_tokens) == (40, 3)
    want = expected(gw.catalog()[MODEL], inp=40, out=3)
    assert usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    assert bill() == want


@pytest.mark.parametrize("stream", [False, True])
def test_cache_usage_is_charged_in_four_buckets(gw, up, key, bill, stream):
    s = {"input_tokens": 1200, "cache_read": 3000, "cache_write_5m": 2000, "cache_write_1h": 1500,
         "output_tokens": 400}
    up.enqueue(Scenario(text="cached answer", **s))
    c = client(gw, key)
    kw = {"model": MODEL, "messages": HI, "extra_body": {"cache": {"ttl": "1h"}}}
    if stream:
        chunks = list(c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
        usage = chunks[-1].usage
    else:
        usage = c.chat.completions.create(**kw).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7700, 400, 8100)
    details = usage.prompt_tokens_details
    assert details.cached_tokens == 3000
    assert details.cache_write_tokens == 3500 and details.model_extra["cache_write_1h_tokens"] == 1500
    want = expected(gw.catalog()[MODEL], inp=1200, read=3000, w5=2000, w1h=1500, out=400)
    assert bill() == want
    if stream:
        assert usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)


def test_cache_writes_without_breakdown_take_the_requested_ttl(gw, up, key, bill):
    up.enqueue(Scenario(input_tokens=10, cache_write_1h=2000, omit_cache_creation=True, output_tokens=5))
    usage = client(gw, key).chat.completions.create(model=MODEL, messages=HI,
                                                    extra_body={"cache": {"ttl": "1h"}}).usage
    assert usage.prompt_tokens_details.model_extra["cache_write_1h_tokens"] == 2000
    assert bill() == expected(gw.catalog()[MODEL], inp=10, w1h=2000, out=5)


CACHE_TURNS = [
    {"role": "system", "content": "You are a meticulous assistant."},
    {"role": "user", "content": "Long document ..."},
    {"role": "assistant", "content": "Read it."},
    {"role": "user", "content": [{"type": "text", "text": "Question?"},
                                 {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
]


def _breakpoints(body: dict) -> list[tuple[str, dict]]:
    found = [(f"tools.{i}", t["cache_control"]) for i, t in enumerate(body.get("tools") or []) if "cache_control" in t]
    if isinstance(body.get("system"), list):
        found += [(f"system.{i}", b["cache_control"]) for i, b in enumerate(body["system"]) if "cache_control" in b]
    for i, m in enumerate(body["messages"]):
        if isinstance(m["content"], list):
            found += [(f"messages.{i}.content.{j}", b["cache_control"])
                      for j, b in enumerate(m["content"]) if "cache_control" in b]
    return found


@pytest.mark.parametrize("cache,cc", [
    (True, {"type": "ephemeral"}),
    ({"ttl": "1h"}, {"type": "ephemeral", "ttl": "1h"}),
])
def test_cache_breakpoints(gw, up, key, cache, cc):
    client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=CACHE_TURNS,
                                            tools=[WEATHER, CLOCK], extra_body={"cache": cache})
    body = up.last_body()
    assert "cache" not in body
    assert body["system"] == [{"type": "text", "text": "You are a meticulous assistant.", "cache_control": cc}]
    assert _breakpoints(body) == [("tools.1", cc), ("system.0", cc), ("messages.2.content.1", cc)]
    assert body["messages"][0]["content"] == "Long document ..."

    # the newest user turn may be tool results: the breakpoint goes on its last block
    client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=TOOL_TURNS[:4],
                                            tools=[WEATHER], extra_body={"cache": cache})
    assert _breakpoints(up.last_body()) == [("tools.0", cc), ("messages.2.content.1", cc)]

    client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=CACHE_TURNS)   # no cache
    assert _breakpoints(up.last_body()) == [] and isinstance(up.last_body()["system"], str)


# ---------------------------------------------------------------------------- errors
def test_overloaded_529_is_503_with_retry_after_and_free(gw, up, key, bill):
    up.enqueue(Scenario(status=529, error_message="Overloaded", headers={"retry-after": "30"}))
    c = client(gw, key)
    with pytest.raises(openai.InternalServerError) as info:
        c.chat.completions.create(model=MODEL, max_tokens=50, messages=HI)
    assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "30"
    err = info.value.body
    assert err["type"] == "service_unavailable" and err["code"] == 503
    assert len(up.message_requests()) == 1   # retry-after beyond the router's backoff: not retried
    assert bill() == 0 and gw.credits(key["key"]).get("held", 0) == 0


def test_stream_open_529_is_503(gw, up, key, bill):
    up.enqueue(Scenario(status=529, error_message="Overloaded", headers={"retry-after": "9"}))
    r = httpx.post(gw.v1 + "/chat/completions", json={"model": MODEL, "messages": HI, "stream": True},
                   headers={"Authorization": f"Bearer {key['key']}"}, timeout=20)
    assert r.status_code == 503 and r.headers["retry-after"] == "9"
    assert r.json()["error"]["type"] == "service_unavailable" and bill() == 0


def test_400_passes_the_provider_message(gw, up, key, bill):
    up.enqueue(Scenario(status=400, error_message=f"messages.0: bad block (key {up.api_key})"))
    with pytest.raises(openai.BadRequestError) as info:
        client(gw, key).chat.completions.create(model=MODEL, max_tokens=50, messages=HI)
    err = info.value.body
    assert err["type"] == "invalid_request_error" and err["code"] == 400
    assert err["message"].startswith("messages.0: bad block") and up.api_key not in err["message"]
    assert bill() == 0


@pytest.mark.parametrize("status", [401, 403, 402])
def test_provider_credentials_refused_is_502_without_the_key(gw, up, key, bill, status):
    up.enqueue(Scenario(status=status, error_message=f"invalid x-api-key {up.api_key}; org acme-prod"))
    r = httpx.post(gw.v1 + "/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 50},
                   headers={"Authorization": f"Bearer {key['key']}"}, timeout=20)
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "upstream_error" and err["code"] == 502
    assert up.api_key not in r.text and "acme-prod" not in r.text and "x-api-key" not in r.text
    assert bill() == 0


def test_mid_stream_error_ends_with_the_gateways_error_event(gw, up, key, bill):
    up.enqueue(Scenario(text="one two three four five", error_after=2, error_message="Overloaded"))
    events, done = sse(gw, key, {"messages": HI, "max_tokens": 50})
    assert done
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e.get("choices"))
    assert text == "one two "
    last = events[-1]
    assert last["error"]["type"] == "upstream_error" and "Overloaded" in last["error"]["message"]
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    assert 0 < bill()   # prompt + the output delivered


def test_error_before_any_output_charges_nothing(gw, up, key, bill):
    up.enqueue(Scenario(text="one two", error_after=0, error_message="Overloaded"))
    events, done = sse(gw, key, {"messages": HI, "max_tokens": 50})
    assert done and events[-1]["choices"][0]["finish_reason"] == "error"
    assert bill() == 0


@pytest.mark.parametrize("how", [{"cut_after": 2}, {"omit_stop": True}])
def test_streams_without_message_stop_count_as_cut(gw, up, key, bill, how):
    up.enqueue(Scenario(text="one two three four", **how))
    events, done = sse(gw, key, {"messages": HI, "max_tokens": 50})
    assert done and "error" in events[-1]
    assert events[-1]["choices"][0]["finish_reason"] == "error"
    assert bill() > 0


# ---------------------------------------------------------------------------- cut streams: the known prompt
def output_estimate(pieces: list[str]) -> int:
    """docs/billing.md's estimator for delivered output: max(fragments, ceil(utf-8 bytes / 4))."""
    return max(len(pieces), -(-sum(len(p.encode()) for p in pieces) // 4))


CUT_TEXT = "one two three four five six seven"
CACHED = {"input_tokens": 1200, "cache_read": 3000, "cache_write_5m": 2000, "cache_write_1h": 1500,
          "output_tokens": 400}


def stream_until_error(gw, key, **kw) -> tuple[list, openai.APIError]:
    """Stream with the SDK; the chunks before the gateway's error event, and the error it raised."""
    chunks = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client(gw, key).chat.completions.create(model=MODEL, messages=HI, stream=True, **kw):
            chunks.append(chunk)   # noqa: PERF402 (list() would lose them when the SDK raises)
    return chunks, info.value


@pytest.mark.parametrize("how", [{"cut_after": 3}, {"error_after": 3, "error_message": "Overloaded"}],
                         ids=["connection-cut", "error-event"])
@pytest.mark.parametrize("usage", [CACHED, {"input_tokens": 777, "output_tokens": 400}], ids=["cache", "plain"])
def test_cut_stream_charges_the_reported_prompt_and_the_estimated_output(gw, up, key, bill, how, usage):
    """message_start told us the input and cache counts: a cut stream is charged those, each bucket at its
    price, plus the documented estimate of the output delivered (not an estimate of the prompt)."""
    up.enqueue(Scenario(text=CUT_TEXT, **usage, **how))
    chunks, err = stream_until_error(gw, key, stream_options={"include_usage": True},
                                     extra_body={"cache": {"ttl": "1h"}})
    delivered = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert delivered == split_text(CUT_TEXT)[:3]
    assert all(c.usage is None for c in chunks)   # no usage chunk arrived, none is invented
    assert err.body["type"] == "upstream_error"
    out = output_estimate(delivered)
    assert out == 4   # "one two three " = 14 bytes in 3 deltas
    want = expected(gw.catalog()[MODEL], inp=usage["input_tokens"], read=usage.get("cache_read", 0),
                    w5=usage.get("cache_write_5m", 0), w1h=usage.get("cache_write_1h", 0), out=out)
    if usage is CACHED:
        assert want == 2_022_287   # docs/billing.md's worked example
    assert bill() == want


def test_cut_stream_cache_writes_without_breakdown_take_the_requested_ttl(gw, up, key, bill):
    up.enqueue(Scenario(text=CUT_TEXT, input_tokens=10, cache_write_1h=2000, omit_cache_creation=True,
                        cut_after=2))
    chunks, _ = stream_until_error(gw, key, extra_body={"cache": {"ttl": "1h"}})
    delivered = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert delivered == split_text(CUT_TEXT)[:2]
    assert bill() == expected(gw.catalog()[MODEL], inp=10, w1h=2000, out=output_estimate(delivered))


def test_stream_without_message_stop_charges_the_reported_output(gw, up, key, bill):
    """message_delta gave the cumulative output_tokens after the last delta: that count covers all the
    output (thinking included), so the charge is what the completed stream would have cost."""
    up.enqueue(Scenario(text=CUT_TEXT, thinking="hmm", omit_stop=True, **CACHED))
    events, done = sse(gw, key, {"messages": HI, "cache": {"ttl": "1h"}})
    assert done and events[-1]["choices"][0]["finish_reason"] == "error"
    assert bill() == expected(gw.catalog()[MODEL], inp=1200, read=3000, w5=2000, w1h=1500, out=400)


def test_client_disconnect_charges_the_reported_prompt(gw, up, key, bill):
    up.enqueue(Scenario(text=CUT_TEXT, chunk_delay=0.3, pings=0, **CACHED))
    seen = []
    with httpx.Client(timeout=10) as c, c.stream(
            "POST", gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key['key']}"},
            json={"model": MODEL, "messages": HI, "stream": True, "cache": {"ttl": "1h"}}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and (json.loads(line[6:])["choices"][0]["delta"].get("content")):
                seen.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
                break   # leaving the block closes the connection after the first delta
    assert seen == split_text(CUT_TEXT)[:1]
    want = expected(gw.catalog()[MODEL], inp=1200, read=3000, w5=2000, w1h=1500, out=output_estimate(seen))
    for _ in range(50):
        if bill() == want and gw.credits(key["key"])["held"] == 0:
            break
        time.sleep(0.1)
    assert bill() == want


def test_partial_usage_reports_only_what_anthropic_said():
    from aicredits.providers.anthropic import StreamTranslator

    tr = StreamTranslator(json_mode=False, ttl="5m")
    assert tr.partial_usage() is None
    tr.feed("message_start", {"message": {"id": "msg_1", "model": UPSTREAM, "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 20,
        "cache_creation": {"ephemeral_5m_input_tokens": 5, "ephemeral_1h_input_tokens": 15}, "output_tokens": 1}}})
    details = {"cached_tokens": 30, "cache_write_tokens": 20, "cache_write_1h_tokens": 15}
    assert tr.partial_usage() == {"prompt_tokens": 60, "prompt_tokens_details": details}   # no output count yet
    tr.feed("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    tr.feed("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
    assert "completion_tokens" not in tr.partial_usage()
    tr.feed("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}})
    assert tr.partial_usage() == {"prompt_tokens": 60, "prompt_tokens_details": details,
                                  "completion_tokens": 7, "total_tokens": 67}
    tr.feed("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " more"}})
    assert "completion_tokens" not in tr.partial_usage()   # output after the count: it no longer covers it


def test_anthropic_counts_follow_the_usage_rule():
    """Counts that are not counts leave prompt/completion null (the estimator bills them); fractions
    round up; cache counts that are not counts read as 0; message_start's output is a placeholder."""
    from aicredits.providers.anthropic import StreamTranslator
    from aicredits.providers.anthropic_translate import openai_usage

    u = openai_usage({"input_tokens": 10.5, "output_tokens": 2.1, "cache_read_input_tokens": -3})
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (11, 3, 14)
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    for bad in ({}, {"input_tokens": None, "output_tokens": None}, {"input_tokens": -1, "output_tokens": "5"}):
        u = openai_usage(bad)
        assert u["prompt_tokens"] is None and u["completion_tokens"] is None and u["total_tokens"] is None
    tr = StreamTranslator(json_mode=False, ttl=None)
    tr.feed("message_start", {"message": {"id": "m", "usage": {"input_tokens": None, "output_tokens": 1}}})
    assert tr.partial_usage() is None
    tr.feed("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": None}})
    [chunk, _] = tr.feed("message_stop", {})
    assert chunk["usage"]["completion_tokens"] is None   # the placeholder 1 is not a count


def test_translation_rejects_unknown_tool_types():
    target = SimpleNamespace(upstream_id=UPSTREAM, spec=None)
    with pytest.raises(InvalidRequest):
        to_anthropic({"messages": HI, "tools": [{"type": "custom", "custom": {"name": "x"}}]}, target)
    body, _, _ = to_anthropic({"messages": HI, "tools": [WEATHER, CLOCK], "tool_choice": {
        "type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "get_time"}}]}}}, target)
    assert [t["name"] for t in body["tools"]] == ["get_time"] and body["tool_choice"] == {"type": "any"}


# ---------------------------------------------------------------------------- the adapter in-process
def _provider(fake, **kw):
    from aicredits.providers.anthropic import AnthropicProvider
    from aicredits.providers.http import make_session
    from aicredits.settings import ProviderSettings

    settings = ProviderSettings("anthropic", "anthropic", fake.base_url + "/", fake.api_key,
                                headers=kw.pop("headers", {}))
    session = make_session(5)
    timeouts = {"connect_timeout": 5, "first_byte_timeout": 5, "idle_timeout": 5, **kw}
    return AnthropicProvider(settings, session, **timeouts), session


TARGET = SimpleNamespace(upstream_id=UPSTREAM, spec=SimpleNamespace(max_output_tokens=64000))


async def test_operator_headers_and_newer_version_drop_sampling(up):
    provider, session = _provider(up, headers={"Anthropic-Version": "2026-10-21", "anthropic-beta": "b1"})
    async with session:
        result = await provider.chat({"messages": HI, "temperature": 0.2, "top_p": 0.5, "max_tokens": 9}, TARGET)
    assert result.data["choices"][0]["message"]["content"] == Scenario().text
    rec = up.message_requests()[-1]
    assert rec.headers["anthropic-version"] == "2026-10-21" and rec.headers["anthropic-beta"] == "b1"
    assert rec.body == {"model": UPSTREAM, "max_tokens": 9, "messages": HI}


async def test_timeouts(up):
    from aicredits.errors import UpstreamTimeout
    from aicredits.providers.base import UpstreamCut

    provider, session = _provider(up, first_byte_timeout=0.3, idle_timeout=0.3)
    async with session:
        up.enqueue(Scenario(first_byte_delay=2))
        with pytest.raises(UpstreamTimeout) as info:
            await provider.chat({"messages": HI}, TARGET)
        assert not info.value.retryable and not info.value.fallback   # it may be working on it: no retry
        up.enqueue(Scenario(text="a b c", chunk_delay=1))
        stream = await provider.stream({"messages": HI}, TARGET)
        got = []
        with pytest.raises(UpstreamCut) as cut:
            async for batch in stream.batches():
                got += batch
        await stream.aclose()
    assert cut.value.timeout and got[0].data["choices"][0]["delta"] == {"role": "assistant", "content": ""}
