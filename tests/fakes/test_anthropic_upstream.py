"""Self-test: the fake Anthropic upstream is faithful enough for the official `anthropic` SDK."""

from __future__ import annotations

import json

import httpx
import pytest

from .anthropic_upstream import FakeAnthropic, Scenario, split_text

MODEL = "claude-sonnet-4-6"
HI = [{"role": "user", "content": "Hi"}]
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def anthropic():
    """The SDK, imported by the tests that use it: it takes over a second of CPU to import, which
    every xdist worker would pay at collection (only this file uses it)."""
    import anthropic
    return anthropic


@pytest.fixture(scope="module")
def server():
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(fake, anthropic):
    with anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, timeout=5) as c:
        yield c


def post(fake, body: dict, *, version: str = "2023-06-01", key: str | None = None) -> httpx.Response:
    return httpx.post(f"{fake.base_url}/v1/messages", json=body, timeout=5,
                      headers={"x-api-key": key or fake.api_key, "anthropic-version": version})


def raw_events(fake, body: dict) -> tuple[list[tuple[str, dict]], Exception | None]:
    got, err = b"", None
    try:
        with httpx.stream("POST", f"{fake.base_url}/v1/messages", json={**body, "stream": True}, timeout=5,
                          headers={"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for part in r.iter_raw():
                got += part
    except httpx.HTTPError as exc:
        err = exc
    events = []
    for ev in got.decode().split("\n\n"):
        if not ev:
            continue
        name_line, data_line = ev.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        events.append((name_line[7:], data))
    return events, err


def test_non_stream_text_with_cache_usage(fake, client):
    fake.enqueue(Scenario(text="Hi there!", input_tokens=30, output_tokens=5, cache_read=100,
                          cache_write_5m=40, cache_write_1h=60))
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=HI)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hi there!"
    assert msg.stop_reason == "end_turn" and msg.model == MODEL and msg.id.startswith("msg_")
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == \
        (30, 5, 100, 100)
    assert (u.cache_creation.ephemeral_5m_input_tokens, u.cache_creation.ephemeral_1h_input_tokens) == (40, 60)
    rec = fake.message_requests()[-1]
    # the SDK >= 2 sends Bearer and 2026-10-21; the fake accepts both auth forms
    assert rec.headers["authorization"] == f"Bearer {fake.api_key}"
    assert rec.headers["anthropic-version"] == "2026-10-21"
    assert rec.body == {"model": MODEL, "max_tokens": 100, "messages": HI}


def test_non_stream_tool_use_and_thinking(fake, client):
    fake.enqueue(Scenario(text="Checking.", thinking="hmm", stop_reason=None,
                          tool_uses=[{"id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]))
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=HI, tools=TOOLS,
                                 tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"city": "Paris"} and msg.content[2].id == "toolu_1"
    assert msg.stop_reason == "tool_use"


def test_stream_text_and_tool_use(fake, client):
    fake.enqueue(Scenario(text="Let me check the weather", input_tokens=25, output_tokens=48, cache_read=7,
                          tool_uses=[{"id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                                     {"id": "toolu_B", "name": "get_weather", "input": {"city": "Rome"}}]))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HI, tools=TOOLS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check the weather"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Paris"} and final.content[2].input == {"city": "Rome"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (25, 48, 7)
    assert fake.last_body()["stream"] is True


def test_stream_wire_format(fake):
    fake.enqueue(Scenario(text="a b", pings=2, tool_uses=[{"id": "t1", "name": "f", "input": {"x": 1}}]))
    events, err = raw_events(fake, {"model": MODEL, "max_tokens": 10, "messages": HI})
    assert err is None
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("ping") == 2 and names[1] == "content_block_start" and names[2] == "ping"
    assert events[0][1]["message"]["usage"]["output_tokens"] == 1
    tool_deltas = [d["delta"]["partial_json"] for n, d in events
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert tool_deltas[0] == "" and len(tool_deltas) >= 3 and json.loads("".join(tool_deltas)) == {"x": 1}
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta" and "text" in d["delta"]] == \
        split_text("a b")
    assert events[-2][1]["usage"] == {"output_tokens": 9}


def test_stream_error_event_raises_in_the_sdk(fake, client, anthropic):
    fake.enqueue(Scenario(text="one two three four", error_after=2, error_message="Overloaded"))
    got = []
    with pytest.raises(anthropic.APIStatusError) as info, \
            client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        got.extend(stream.text_stream)
    assert got == ["one ", "two "]
    assert info.value.type == "overloaded_error" and info.value.api_message == "Overloaded"


def test_cut_and_unfinished_streams(fake, client):
    fake.enqueue(Scenario(text="one two three four", cut_after=2))
    events, err = raw_events(fake, {"model": MODEL, "max_tokens": 10, "messages": HI})
    assert err is not None and [n for n, _ in events][-1] == "content_block_delta"
    assert "message_stop" not in [n for n, _ in events]
    fake.enqueue(Scenario(text="one", omit_stop=True))
    events, err = raw_events(fake, {"model": MODEL, "max_tokens": 10, "messages": HI})
    assert err is None and [n for n, _ in events][-1] == "message_delta"


@pytest.mark.parametrize("status,exc", [
    (400, "BadRequestError"), (403, "PermissionDeniedError"), (404, "NotFoundError"),
    (429, "RateLimitError"), (500, "InternalServerError"), (529, "OverloadedError"),
])
def test_error_statuses_map_to_sdk_exceptions(fake, client, anthropic, status, exc):
    fake.enqueue(Scenario(status=status, error_message="nope", headers={"retry-after": "7"}))
    with pytest.raises(getattr(anthropic, exc)) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert info.value.status_code == status and info.value.api_message == "nope"
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.request_id and info.value.request_id.startswith("req_")
    if status == 529:
        assert isinstance(info.value, anthropic.InternalServerError) and info.value.type == "overloaded_error"


def test_auth_and_versions(fake, client, anthropic):
    with anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-wrong", max_retries=0) as bad, \
            pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert post(fake, {"model": MODEL, "max_tokens": 10, "messages": HI}, key="wrong").status_code == 401
    # x-api-key with 2023-06-01 (the gateway's form) takes temperature and top_p; 2026-10-21 refuses them
    ok = post(fake, {"model": MODEL, "max_tokens": 10, "messages": HI, "temperature": 0.5, "top_p": 0.9})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=10, messages=HI, extra_body={"temperature": 0.5})
    bad = post(fake, {"model": MODEL, "max_tokens": 10, "messages": HI}, version="2099-01-01")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert fake.pending == 0


@pytest.mark.parametrize("body,needle", [
    ({"frequency_penalty": 1}, "Extra inputs"),
    ({"messages": [{"role": "system", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
    ({"stop_sequences": [" "]}, "stop_sequences"),
    ({"tool_choice": {"type": "auto"}}, "tool_choice"),
    ({"max_tokens": None}, "max_tokens"),
    ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}] * 5},
     "A maximum of 4 blocks with cache_control"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                   {"role": "user", "content": "no result"}]}, "without `tool_result`"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]}, "unexpected `tool_use_id`"),
])
def test_validation_like_the_api(fake, body, needle):
    r = post(fake, {"model": MODEL, "max_tokens": 10, "messages": HI, **body})
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert needle in err["error"]["message"]


def test_unknown_model_and_path(fake, client, anthropic):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="gpt-4o", max_tokens=10, messages=HI)
    assert httpx.get(f"{fake.base_url}/v1/nope").status_code == 404
    assert [m.id for m in client.models.list()] == ["claude-sonnet-4-6", "claude-haiku-4-5"]


def test_fifo_queue_and_recording(fake, client):
    fake.enqueue(Scenario(text="first"), Scenario(text="second"))
    assert client.messages.create(model=MODEL, max_tokens=5, messages=HI).content[0].text == "first"
    assert client.messages.create(model=MODEL, max_tokens=5, messages=HI).content[0].text == "second"
    assert client.messages.create(model=MODEL, max_tokens=5, messages=HI).content[0].text == Scenario().text
    assert len(fake.message_requests()) == 3
