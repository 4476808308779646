"""POST /v1/responses through the gateway with the official openai SDK as the client:
native passthrough for OpenAI models, translation to chat completions for the others."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens
from aicredits.services.responses_translate import as_chat_view, responses_to_chat
from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CALL = {"id": "call_w1", "name": "get_weather", "arguments": '{"city":"Paris"}'}


def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0)


def spent_micros(gateway, key) -> int:
    return round(gateway.credits(key["key"])["total_spent"] * 1_000_000)


def inr(micros: int) -> str:
    return f"{micros // 10**6}.{micros % 10**6:06d}"


def settled(gateway, key, timeout: float = 5.0) -> dict:
    """/v1/credits once no hold is open (a stream settles just after its last byte)."""
    deadline = time.time() + timeout
    while True:
        doc = gateway.credits(key["key"])
        if not doc.get("held") or time.time() > deadline:
            return doc
        time.sleep(0.05)


def last_request(upstream, suffix: str):
    return [r for r in upstream.requests if r.path.endswith(suffix)][-1]


@pytest.fixture(scope="module")
def local_gateway(serve_gateway, fake_openai, tmp_path_factory):
    """A gateway with an OpenAI-compatible provider from TOML (served by translation)."""
    path = tmp_path_factory.mktemp("cfg") / "aicredits.toml"
    path.write_text(f"""
[providers.local]
kind = "openai_compatible"
base_url = "{fake_openai.base_url}"
api_key_env = "LOCAL_KEY"

[[models]]
id = "local/gpt-4o-mini"
provider = "local"
upstream_id = "gpt-4o-mini"
endpoint = "chat"
context_window = 128000
max_output_tokens = 4096
input_cost_per_1m = 0.5
output_cost_per_1m = 1.5
cache_read_cost_per_1m = 0.25
""")
    return serve_gateway(env={"AICREDITS_CONFIG": str(path), "LOCAL_KEY": fake_openai.api_key})


@pytest.fixture
def local_key(local_gateway):
    return local_gateway.create_key(credits="100")


# ---------------------------------------------------------------------- OpenAI: native passthrough
def test_native_non_streaming_charges_catalog_price_with_cached_tokens(gateway, upstream, key):
    upstream.enqueue(Scenario(content="Hi!", prompt_tokens=1234, completion_tokens=567, cached_tokens=200))
    raw = client(gateway, key).responses.with_raw_response.create(
        model="openai/gpt-4o-mini", input="Hello", instructions="Be terse.",
        extra_body={"no_cache": True, "cache": True})
    resp = raw.parse()
    assert resp.output_text == "Hi!"
    assert resp.usage.input_tokens == 1234 and resp.usage.input_tokens_details.cached_tokens == 200
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], 1234, 567, cached=200)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert raw.headers["x-aicredits-cache"] == "bypass" and raw.headers["x-request-id"]
    assert spent_micros(gateway, key) == want
    sent = last_request(upstream, "/responses")
    assert sent.path == "/v1/responses"
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["input"] == "Hello"
    assert sent.body["instructions"] == "Be terse."
    assert not {"no_cache", "cache", "models"} & set(sent.body)
    assert isinstance(sent.body["max_output_tokens"], int) and sent.body["max_output_tokens"] > 0
    assert sent.headers["authorization"] == f"Bearer {upstream.api_key}"
    assert key["key"] not in sent.raw.decode()


def test_native_streaming_relays_events_and_adds_cost(gateway, upstream, key):
    upstream.enqueue(Scenario(content="one two three", prompt_tokens=50, completion_tokens=3, cached_tokens=10))
    with client(gateway, key).responses.stream(model="gpt-4o-mini", input="count", max_output_tokens=100) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two three"
    assert final.output_text == "one two three"
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], 50, 3, cached=10)
    assert events[-1].response.usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    assert settled(gateway, key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)
    sent = last_request(upstream, "/responses")
    assert sent.body["stream"] is True and sent.body["max_output_tokens"] == 100


def test_native_function_calls(gateway, upstream, key):
    c = client(gateway, key)
    upstream.enqueue(Scenario(tool_calls=[CALL], prompt_tokens=80, completion_tokens=12))
    resp = c.responses.create(model="gpt-4o-mini", input="Weather in Paris?", tools=TOOLS)
    call = resp.output[0]
    assert (call.type, call.name, call.call_id, json.loads(call.arguments)) == \
        ("function_call", "get_weather", "call_w1", {"city": "Paris"})
    assert last_request(upstream, "/responses").body["tools"] == TOOLS
    upstream.enqueue(Scenario(tool_calls=[CALL], prompt_tokens=80, completion_tokens=12))
    with c.responses.stream(model="gpt-4o-mini", input="Weather in Paris?", tools=TOOLS) as s:
        deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == CALL["arguments"] and len(deltas) >= 2
    assert final.output[0].arguments == CALL["arguments"]


def test_native_cut_stream_charges_prompt_and_delivered(gateway, upstream, key):
    upstream.enqueue(Scenario(content="one two three four five", cut_after=2))
    events = list(client(gateway, key).responses.create(model="gpt-4o-mini", input="count", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two "
    assert events[-1].type == "error" and events[-1].code == "upstream_error" and events[-1].message
    prompt = estimate_prompt_tokens(as_chat_view({"model": "gpt-4o-mini", "input": "count"}))
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], prompt, estimate_text_tokens(8, 2))
    assert settled(gateway, key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)


def test_native_error_before_output_charges_nothing(gateway, upstream, key):
    c = client(gateway, key)
    upstream.enqueue(Scenario(content="never sent", error_after=0))
    events = list(c.responses.create(model="gpt-4o-mini", input="x", stream=True))
    assert events[-1].type == "error"
    assert not any(e.type == "response.output_text.delta" for e in events)
    upstream.enqueue(Scenario(status=400, error_type="invalid_request_error", error_message="bad tool schema"))
    with pytest.raises(openai.BadRequestError) as exc:
        c.responses.create(model="gpt-4o-mini", input="x")
    assert exc.value.body["type"] == "invalid_request_error" and "bad tool schema" in exc.value.body["message"]
    assert settled(gateway, key)["total_spent"] == 0


def test_native_client_disconnect_cancels_upstream(gateway, upstream, key):
    upstream.enqueue(Scenario(content="a b c d e f g h", chunk_delay=0.3))
    with client(gateway, key).responses.create(model="gpt-4o-mini", input="count", stream=True) as stream:
        for ev in stream:
            if ev.type == "response.output_text.delta":
                break
    assert upstream.wait_disconnect(5)
    prompt = estimate_prompt_tokens(as_chat_view({"model": "gpt-4o-mini", "input": "count"}))
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], prompt, 1)
    assert settled(gateway, key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)


def test_native_response_failed(gateway, upstream, key):
    c = client(gateway, key)
    upstream.enqueue(Scenario(content="partial answer", finish_reason="failed", prompt_tokens=30,
                              completion_tokens=2))
    events = list(c.responses.create(model="gpt-4o-mini", input="x", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_error"
    want = expected_micros(gateway.catalog()["openai/gpt-4o-mini"], 30, 2)
    assert events[-1].response.usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    # no output at all: nothing charged, streaming or not
    upstream.enqueue(Scenario(content="", finish_reason="failed", prompt_tokens=30, completion_tokens=0))
    events = list(c.responses.create(model="gpt-4o-mini", input="x", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.usage.model_extra["cost"] == 0
    upstream.enqueue(Scenario(content="", finish_reason="failed", prompt_tokens=30, completion_tokens=0,
                              error_message="The fake model broke."))
    with pytest.raises(openai.APIStatusError) as exc:
        c.responses.create(model="gpt-4o-mini", input="x")
    assert exc.value.status_code == 502 and exc.value.body["type"] == "upstream_error"
    assert settled(gateway, key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)


def test_native_failures_reach_the_client_without_account_ids(gateway, upstream, key):
    """A failed Response (streamed or not) and an `error` event carry the provider's words, never
    the operator's organization or project id."""
    org, proj = "org-8bKzPvQ3xR1mN2jL5tY7wC9a", "proj_Ab12Cd34Ef56Gh78Ij90Kl"
    leaky = f"Quota exceeded for organization {org} in project {proj}."
    seen = "Quota exceeded for organization [redacted] in project [redacted]."
    headers = {"Authorization": f"Bearer {key['key']}"}
    texts = []
    for stream, scenario in [(True, Scenario(content="ab", finish_reason="failed", error_message=leaky)),
                             (True, Scenario(content="never sent", error_after=0, error_message=leaky)),
                             (False, Scenario(content="ab", finish_reason="failed", error_message=leaky))]:
        upstream.enqueue(scenario)
        r = httpx.post(gateway.v1 + "/responses", json={"model": "gpt-4o-mini", "input": "x", "stream": stream},
                       headers=headers, timeout=20)
        assert r.status_code == 200, r.text
        texts.append(r.text)
    for text in texts:
        assert seen in text and org not in text and proj not in text, text


def test_native_stateful_request_holds_the_context_window(gateway, upstream):
    """previous_response_id brings context the body does not show: the hold covers the window."""
    poor = gateway.create_key(credits="0.5")
    c = client(gateway, poor)
    upstream.enqueue(Scenario(content="ok"))
    assert c.responses.create(model="gpt-4o-mini", input="Hello").output_text == "ok"
    with pytest.raises(openai.APIStatusError) as exc:
        c.responses.create(model="gpt-4o-mini", input="Hello", previous_response_id="resp_123")
    assert exc.value.status_code == 402 and exc.value.body["type"] == "insufficient_credits"


# ---------------------------------------------------------------------- translated: demo and TOML providers
def test_demo_model_translated_both_ways(gateway, key):
    c = client(gateway, key)
    raw = c.responses.with_raw_response.create(model="demo/echo", input="hello there")
    resp = raw.parse()
    assert resp.status == "completed" and resp.object == "response"
    assert resp.output_text.startswith("Hello from the aicredits demo model") and "hello there" in resp.output_text
    entry = gateway.catalog()["demo/echo"]
    first = expected_micros(entry, resp.usage.input_tokens, resp.usage.output_tokens)
    assert raw.headers["x-aicredits-cost"] == inr(first)
    with c.responses.stream(model="demo/echo", input=[{"role": "user", "content": "stream me"}]) as s:
        events = list(s)
        final = s.get_final_response()
    assert "stream me" in final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    usage = events[-1].response.usage
    second = expected_micros(entry, usage.input_tokens, usage.output_tokens)
    assert usage.model_extra["cost"] == pytest.approx(second / 1e6, abs=1e-9)
    assert settled(gateway, key)["total_spent"] == pytest.approx((first + second) / 1e6, abs=1e-9)


def test_local_provider_translated_non_streaming(local_gateway, upstream, local_key):
    upstream.enqueue(Scenario(content="Bonjour!", prompt_tokens=100, completion_tokens=20, cached_tokens=10))
    raw = client(local_gateway, local_key).responses.with_raw_response.create(
        model="local/gpt-4o-mini", instructions="Answer in French.", temperature=0.2, max_output_tokens=50,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hello"},
                                            {"type": "input_image", "image_url": "https://x.test/cat.png"}]}],
        text={"format": {"type": "json_schema", "name": "greeting", "schema": {"type": "object"}}})
    resp = raw.parse()
    assert resp.output_text == "Bonjour!" and resp.status == "completed"
    assert resp.output[0].type == "message" and resp.output[0].id.startswith("msg_")
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (100, 20, 120)
    assert resp.usage.input_tokens_details.cached_tokens == 10
    want = expected_micros(local_gateway.catalog()["local/gpt-4o-mini"], 100, 20, cached=10)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    sent = last_request(upstream, "/chat/completions").body
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]}]
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "greeting", "schema": {"type": "object"}}}
    assert "input" not in sent and "instructions" not in sent


def test_local_provider_translated_streaming(local_gateway, upstream, local_key):
    upstream.enqueue(Scenario(content="one two three", prompt_tokens=40, completion_tokens=3))
    with client(local_gateway, local_key).responses.stream(model="local/gpt-4o-mini", input="count") as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["one ", "two ", "three"]
    assert final.output_text == "one two three" and final.id == events[0].response.id
    want = expected_micros(local_gateway.catalog()["local/gpt-4o-mini"], 40, 3)
    assert events[-1].response.usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    assert settled(local_gateway, local_key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)
    assert last_request(upstream, "/chat/completions").body["stream_options"] == {"include_usage": True}


def test_local_provider_function_call_round_trip(local_gateway, upstream, local_key):
    c = client(local_gateway, local_key)
    upstream.enqueue(Scenario(tool_calls=[CALL], prompt_tokens=60, completion_tokens=9))
    first = c.responses.create(model="local/gpt-4o-mini", input="Weather in Paris?", tools=TOOLS,
                               tool_choice={"type": "function", "name": "get_weather"})
    call = first.output[0]
    assert (call.type, call.call_id, call.name, call.arguments) == \
        ("function_call", "call_w1", "get_weather", CALL["arguments"])
    sent = last_request(upstream, "/chat/completions").body
    assert sent["tools"] == [{"type": "function", "function": {k: TOOLS[0][k]
                                                               for k in ("name", "description", "parameters")}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    upstream.enqueue(Scenario(content="Sunny in Paris.", prompt_tokens=90, completion_tokens=5))
    with c.responses.stream(model="local/gpt-4o-mini", tools=TOOLS, input=[
            {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}]) as s:
        final = s.get_final_response()
    assert final.output_text == "Sunny in Paris."
    assert last_request(upstream, "/chat/completions").body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "get_weather",
                                                               "arguments": CALL["arguments"]}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21C"}]
    # a streamed function call comes back as function_call items and argument deltas
    upstream.enqueue(Scenario(tool_calls=[CALL, {**CALL, "id": "call_w2", "arguments": '{"city":"Rome"}'}]))
    with c.responses.stream(model="local/gpt-4o-mini", input="Paris and Rome?", tools=TOOLS) as s:
        events = list(s)
        final = s.get_final_response()
    assert [(o.type, o.call_id, o.arguments) for o in final.output] == [
        ("function_call", "call_w1", '{"city":"Paris"}'), ("function_call", "call_w2", '{"city":"Rome"}')]
    args = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(e.delta for e in args if e.output_index == 1) == '{"city":"Rome"}'


def test_local_provider_length_finish_is_incomplete(local_gateway, upstream, local_key):
    upstream.enqueue(Scenario(content="cut short", finish_reason="length"))
    resp = client(local_gateway, local_key).responses.create(model="local/gpt-4o-mini", input="x",
                                                             max_output_tokens=2)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "cut short"
    upstream.enqueue(Scenario(content="cut short", finish_reason="length"))
    events = list(client(local_gateway, local_key).responses.create(model="local/gpt-4o-mini", input="x",
                                                                    stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_local_provider_cut_stream(local_gateway, upstream, local_key):
    upstream.enqueue(Scenario(content="one two three four five", cut_after=2))
    events = list(client(local_gateway, local_key).responses.create(model="local/gpt-4o-mini", input="count",
                                                                    stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two "
    assert events[-1].type == "error" and events[-1].code == "upstream_error"
    assert not any(e.type == "response.completed" for e in events)
    chat = responses_to_chat({"model": "local/gpt-4o-mini", "input": "count"})
    want = expected_micros(local_gateway.catalog()["local/gpt-4o-mini"], estimate_prompt_tokens(chat),
                           estimate_text_tokens(8, 2))
    assert settled(local_gateway, local_key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)


def test_local_provider_client_disconnect_cancels_upstream(local_gateway, upstream, local_key):
    upstream.enqueue(Scenario(content="a b c d e f g h", chunk_delay=0.3))
    with client(local_gateway, local_key).responses.create(model="local/gpt-4o-mini", input="count",
                                                           stream=True) as stream:
        for ev in stream:
            if ev.type == "response.output_text.delta":
                break
    assert upstream.wait_disconnect(5)
    chat = responses_to_chat({"model": "local/gpt-4o-mini", "input": "count"})
    want = expected_micros(local_gateway.catalog()["local/gpt-4o-mini"], estimate_prompt_tokens(chat), 1)
    assert settled(local_gateway, local_key)["total_spent"] == pytest.approx(want / 1e6, abs=1e-9)


# ---------------------------------------------------------------------- refusals and bad input
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "demo/echo"])
def test_402_on_an_empty_wallet(gateway, model):
    poor = gateway.create_key(credits=None)
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, poor).responses.create(model=model, input="Hello")
    assert exc.value.status_code == 402
    assert exc.value.body["type"] == "insufficient_credits" and exc.value.body["code"] == 402


@pytest.fixture(scope="module")
def idle_key(gateway):
    """One key for the requests that must never spend (bad input)."""
    return gateway.create_key(credits="1")


@pytest.mark.parametrize("body,param", [
    ({"model": "gpt-4o-mini"}, "input"),
    ({"input": "hi"}, "model"),
    ({"model": "gpt-4o-mini", "input": 123}, "input"),
    ({"model": "gpt-4o-mini", "input": []}, "input"),
    ({"model": "gpt-4o-mini", "input": ["not an item"]}, "input[0]"),
    ({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": "ten"}, "max_output_tokens"),
    ({"model": "gpt-4o-mini", "input": "hi", "tools": "get_weather"}, "tools"),
    ({"model": "gpt-4o-mini", "input": "hi", "stream": "yes"}, "stream"),
    ({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "demo/echo", "input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
    ({"model": "demo/echo", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "demo/echo", "input": [{"type": "reasoning", "summary": []}]}, "input"),
    ({"model": "demo/echo", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
])
def test_bad_input_is_a_400_naming_the_field(gateway, idle_key, upstream, body, param):
    r = httpx.post(gateway.v1 + "/responses", json=body, headers={"Authorization": f"Bearer {idle_key['key']}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == 400 and err["param"] == param
    assert err["message"]
    assert not [q for q in upstream.requests if q.path.endswith(("/responses", "/chat/completions"))]
    assert gateway.credits(idle_key["key"])["total_spent"] == 0


def test_not_json_and_unknown_model(gateway, idle_key):
    headers = {"Authorization": f"Bearer {idle_key['key']}", "content-type": "application/json"}
    r = httpx.post(gateway.v1 + "/responses", content=b"{nope", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(gateway.v1 + "/responses", json={"model": "nope/nothing", "input": "x"}, headers=headers)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


@pytest.mark.parametrize("body,param,message", [
    ({"input": "hi"}, "model", "'model' is required."),
    ({"model": "", "input": "hi"}, "model", "'model' must be a non-empty string."),
    ({"model": "gpt-4o-mini", "input": ["not an item"]}, "input[0]", "input[0] must be an object."),
    ({"model": "gpt-4o-mini", "input": "hi", "stream": "yes"}, "stream", "'stream' must be a boolean."),
    ({"model": "gpt-4o-mini", "input": "hi", "instructions": 5}, "instructions", "'instructions' must be a string."),
    ({"model": "gpt-4o-mini", "input": "hi", "tool_choice": 5}, "tool_choice",
     "'tool_choice' must be a string or an object."),
    ({"model": "gpt-4o-mini", "input": "hi", "top_p": "high"}, "top_p", "'top_p' must be a number."),
    ({"model": "demo/echo", "input": [{"role": "user", "content": 5}]}, "input[0].content",
     "input[0].content must be a string or an array of parts."),
    ({"model": "demo/echo", "input": [{"role": "user", "content": [7]}]}, "input[0].content[0]",
     "input[0].content[0] must be an object."),
])
def test_shared_shape_checks_say_what_is_wrong(gateway, idle_key, body, param, message):
    """The checks /v1/chat/completions shares (services/validation.py): the same words, the field named."""
    r = httpx.post(gateway.v1 + "/responses", json=body, headers={"Authorization": f"Bearer {idle_key['key']}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["type"], err["code"], err.get("param"), err["message"]) == ("invalid_request_error", 400, param, message)
