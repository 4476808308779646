"""Self-test: the fake OpenAI upstream is faithful enough for the official `openai` SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .openai_upstream import FakeOpenAI, Scenario, embedding_vector, split_content

MESSAGES = [{"role": "user", "content": "Hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(fake):
    with openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, timeout=5) as c:
        yield c


def raw_stream(fake, body: dict) -> tuple[bytes, Exception | None]:
    """POST a chat request with httpx and return the raw bytes received (and the error that ended it, if any)."""
    got = b""
    try:
        with httpx.stream(
            "POST",
            f"{fake.base_url}/chat/completions",
            json=body,
            timeout=5,
            headers={"Authorization": f"Bearer {fake.api_key}"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for part in r.iter_raw():
                got += part
    except httpx.HTTPError as exc:
        return got, exc
    return got, None


def sse_data(raw: bytes) -> list[str]:
    text = raw.decode()
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    for ev in events:
        assert ev.startswith("data: ") and "\n" not in ev, ev  # one data line per event, no event: lines
    return [ev[len("data: ") :] for ev in events]


def test_non_stream(fake, client):
    fake.enqueue(
        Scenario(
            content="Hi there!", prompt_tokens=30, completion_tokens=5, cached_tokens=10, reasoning_tokens=2
        )
    )
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert r.id.startswith("chatcmpl-") and isinstance(r.created, int)
    assert r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert r.choices[0].message.content == "Hi there!" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (30, 5, 35)
    assert u.prompt_tokens_details.cached_tokens == 10 and u.completion_tokens_details.reasoning_tokens == 2
    (rec,) = fake.requests
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.headers["authorization"] == f"Bearer {fake.api_key}"
    assert rec.body["messages"] == MESSAGES and rec.body["temperature"] == 0.2
    assert json.loads(rec.raw) == rec.body
    assert fake.in_flight == 0


def test_queue_fifo_then_default(fake, client):
    fake.enqueue(Scenario(content="one"), Scenario(content="two", finish_reason="length", omit_usage=True))
    a = client.chat.completions.create(model="m", messages=MESSAGES)
    b = client.chat.completions.create(model="m", messages=MESSAGES)
    c = client.chat.completions.create(model="m", messages=MESSAGES)
    assert a.choices[0].message.content == "one"
    assert (
        b.choices[0].message.content == "two" and b.choices[0].finish_reason == "length" and b.usage is None
    )
    assert c.choices[0].message.content == Scenario().content and c.usage.total_tokens == 28
    assert len({a.id, b.id, c.id}) == 3


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_usage_only_when_asked(fake, client, include_usage):
    fake.enqueue(Scenario(content="Hello big world", prompt_tokens=7, completion_tokens=3))
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(
        c.id == chunks[0].id and c.model == "gpt-4o" and c.object == "chat.completion.chunk" for c in chunks
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello big world"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert finish[0].choices[0].delta.content is None and finish[0].choices[0].delta.role is None
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.total_tokens) == (7, 10)
    else:
        assert usage_chunks == [] and chunks[-1] is finish[0]


def test_stream_raw_framing(fake):
    fake.enqueue(Scenario(content="a b"))
    raw, err = raw_stream(
        fake,
        {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert err is None
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    objs = [json.loads(d) for d in data[:-1]]
    assert [o["choices"][0]["delta"] for o in objs[:-1]] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "a "},
        {"content": "b"},
        {},
    ]
    assert objs[-2]["choices"][0]["finish_reason"] == "stop"
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] == 9


def test_omit_done_and_omit_usage(fake):
    fake.enqueue(Scenario(content="x", omit_done=True, omit_usage=True))
    raw, err = raw_stream(
        fake, {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert err is None
    data = sse_data(raw)
    assert "[DONE]" not in data
    assert json.loads(data[-1])["choices"][0]["finish_reason"] == "stop"


TOOL_CALLS = [
    {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    {"id": "call_2", "name": "get_time", "arguments": '{"tz":"Europe/Paris"}'},
]


def test_tool_calls_non_stream(fake, client):
    fake.enqueue(Scenario(tool_calls=TOOL_CALLS))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content is None
    assert [(t.id, t.type, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        (t["id"], "function", t["name"], t["arguments"]) for t in TOOL_CALLS
    ]


def test_tool_calls_stream(fake, client):
    fake.enqueue(Scenario(tool_calls=TOOL_CALLS))
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True)
    )
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    assert first.tool_calls[0].id == "call_1" and first.tool_calls[0].function.arguments == ""
    calls: dict[int, dict] = {}
    fragments: dict[int, int] = {}
    for c in chunks:
        for tc in c.choices[0].delta.tool_calls or []:
            acc = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                acc["id"], acc["name"] = tc.id, tc.function.name
            if tc.function.arguments:
                acc["arguments"] += tc.function.arguments
                fragments[tc.index] = fragments.get(tc.index, 0) + 1
                assert tc.id is None and tc.function.name is None
    assert [calls[i] for i in sorted(calls)] == TOOL_CALLS
    assert all(n >= 2 for n in fragments.values()) and len(fragments) == 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # the SDK's own accumulator agrees
    fake.enqueue(Scenario(tool_calls=TOOL_CALLS))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS) as s:
        final = s.get_final_completion()
    got = [(t.id, t.function.name, t.function.arguments) for t in final.choices[0].message.tool_calls]
    assert got == [(t["id"], t["name"], t["arguments"]) for t in TOOL_CALLS]


@pytest.mark.parametrize(
    "status,exc_class,error_type",
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_status(fake, client, status, exc_class, error_type, stream):
    fake.enqueue(
        Scenario(
            status=status,
            error_type=error_type,
            error_message="nope",
            error_code="c1",
            headers={"retry-after": "7"},
        )
    )
    with pytest.raises(exc_class) as ei:
        client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)
    e = ei.value
    assert e.status_code == status and e.response.headers["retry-after"] == "7"
    assert e.body == {"message": "nope", "type": error_type, "param": None, "code": "c1"}
    assert e.type == error_type and e.code == "c1"


def test_error_after_mid_stream(fake, client):
    fake.enqueue(
        Scenario(
            content="one two three four",
            error_after=2,
            error_message="boom mid-stream",
            error_type="server_error",
        )
    )
    got = []
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as ei:
        for c in stream:
            got.append(c.choices[0].delta.content)
    assert got == ["", "one ", "two "]
    assert "boom mid-stream" in str(ei.value) and ei.value.body["type"] == "server_error"
    assert not isinstance(ei.value, openai.APIStatusError)


def test_embeddings_float_and_base64(fake, client):
    fake.enqueue(Scenario(prompt_tokens=4), Scenario(prompt_tokens=2))
    r = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.embedding for d in r.data] == [embedding_vector("alpha"), embedding_vector("beta")]
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 3
    assert r.model == "text-embedding-3-small" and r.usage.prompt_tokens == 4 and r.usage.total_tokens == 4
    r2 = client.embeddings.create(model="text-embedding-3-small", input="alpha")  # SDK default: base64
    assert fake.requests[-1].body["encoding_format"] == "base64"
    assert r2.data[0].embedding == embedding_vector("alpha") and r2.usage.prompt_tokens == 2


def test_wrong_key_and_validation(fake, client):
    fake.enqueue(Scenario(content="kept"))
    bad = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model="m", messages=MESSAGES)
    bad.close()
    assert ei.value.code == "invalid_api_key" and ei.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as ei2:
        client.chat.completions.create(model="m", messages=None)  # type: ignore[arg-type]
    assert ei2.value.body["param"] == "messages"
    # neither consumed the queued scenario
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "kept"
    assert len(fake.requests) == 3


def test_models_and_unknown_path(fake, client):
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    r = httpx.post(f"{fake.base_url}/nope", headers={"Authorization": f"Bearer {fake.api_key}"})
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_cut_after_has_no_done(fake):
    fake.enqueue(Scenario(content="one two three four", cut_after=2))
    raw, err = raw_stream(
        fake, {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert isinstance(err, httpx.RemoteProtocolError)  # incomplete chunked body
    assert b"[DONE]" not in raw and b'finish_reason":"stop' not in raw and b"usage" not in raw
    assert raw.count(b'"content":"') == 3  # role chunk + 2 deltas
    assert fake.disconnects == []  # the server hung up, not the client


def test_client_disconnect_is_recorded(fake, client):
    fake.enqueue(Scenario(content="a b c d e f g h i j", chunk_delay=0.2))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    it = iter(stream)
    next(it), next(it)
    assert fake.in_flight == 1
    stream.close()
    assert fake.wait_disconnect(timeout=3)
    assert len(fake.disconnects) == 1 and fake.disconnects[0].startswith("chatcmpl-")
    deadline = time.monotonic() + 2
    while fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.in_flight == 0
    assert not fake.wait_disconnect(timeout=0.05)  # already reported


def test_hang_and_first_byte_delay(fake):
    fake.enqueue(Scenario(hang=True))
    slow = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        slow.chat.completions.create(model="m", messages=MESSAGES)
    slow.close()
    assert fake.wait_disconnect(timeout=3)
    fake.enqueue(Scenario(first_byte_delay=0.2))
    t0 = time.monotonic()
    with httpx.Client(timeout=5) as h:
        r = h.post(
            f"{fake.base_url}/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {fake.api_key}"},
        )
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.2


def test_split_content():
    assert split_content("Hello from  the fake.") == ["Hello ", "from  ", "the ", "fake."]
    assert "".join(split_content(" a\nb ")) == " a\nb "


async def test_async_client_stream(fake):
    fake.enqueue(Scenario(content="async works", completion_tokens=2))
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0) as ac:
        stream = await ac.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "async works"
    assert chunks[-1].usage.completion_tokens == 2
