"""Self-test: the fake upstream's Gemini and Azure flavors, driven by the official `openai` SDK."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from .openai_upstream import FakeOpenAI, Scenario, embedding_vector

MESSAGES = [{"role": "user", "content": "Hi"}]
CALL = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
API_VERSION = "2024-10-21"
GEMINI_BAD_KEY = "API key not valid. Please pass a valid API key."


@pytest.fixture(scope="module")
def gemini_server():
    fake = FakeOpenAI(api_key="gemini-fake-key", flavor="gemini").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def azure_server():
    fake = FakeOpenAI(api_key="azure-fake-key", flavor="azure").start()
    yield fake
    fake.stop()


@pytest.fixture
def gemini(gemini_server):
    gemini_server.reset()
    gemini_server.gemini_tool_call_index = False
    yield gemini_server
    gemini_server.reset()
    gemini_server.gemini_tool_call_index = False


@pytest.fixture
def azure(azure_server):
    azure_server.reset()
    azure_server.azure_models.clear()
    yield azure_server
    azure_server.reset()
    azure_server.azure_models.clear()


@pytest.fixture
def gclient(gemini):
    with openai.OpenAI(base_url=gemini.base_url, api_key=gemini.api_key, max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
def aclient(azure):
    with openai.AzureOpenAI(
        azure_endpoint=azure.base_url, api_key=azure.api_key, api_version=API_VERSION, max_retries=0,
        timeout=5,
    ) as c:
        yield c


def azure_url(fake: FakeOpenAI, deployment: str, what: str = "chat/completions", query: str = "") -> str:
    return f"{fake.base_url}/openai/deployments/{deployment}/{what}{query}"


def raw_stream(url: str, headers: dict, body: dict) -> tuple[list[dict | str], bool]:
    """POST a streaming request: (its SSE data payloads, JSON but for [DONE]; whether the stream broke)."""
    got = b""
    broke = False
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=5) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for part in r.iter_raw():
                got += part
    except (httpx.RemoteProtocolError, httpx.ReadError):
        broke = True
    events = [e.removeprefix("data: ") for e in got.decode().split("\n\n") if e]
    return [e if e == "[DONE]" else json.loads(e) for e in events], broke


def test_base_url_per_flavor():
    for flavor, path in (("openai", "/v1"), ("gemini", "/v1beta/openai"), ("azure", "")):
        with FakeOpenAI(flavor=flavor) as fake:
            assert re.fullmatch(rf"http://127\.0\.0\.1:\d+{re.escape(path)}", fake.base_url)
    with pytest.raises(ValueError):
        FakeOpenAI(flavor="bedrock")


# ---------------------------------------------------------------------- gemini
def test_gemini_chat(gemini, gclient):
    gemini.enqueue(Scenario(content="Hi there", prompt_tokens=7, completion_tokens=42, reasoning_tokens=40))
    r = gclient.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES)
    assert r.choices[0].message.content == "Hi there"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gemini-2.5-flash"  # echoes the requested id
    assert re.fullmatch(r"[A-Za-z0-9_-]{23}", r.id)
    # thinking tokens are in total_tokens but not in completion_tokens, as Gemini reports them
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 2, 49)
    assert r.usage.completion_tokens_details is None
    (rec,) = gemini.chat_requests()
    assert rec.path == "/v1beta/openai/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {gemini.api_key}"
    assert rec.body["messages"] == MESSAGES


@pytest.mark.parametrize("include_usage", [True, False])
def test_gemini_stream_usage_rides_on_the_finish_chunk(gemini, gclient, include_usage):
    gemini.enqueue(Scenario(content="one two three", prompt_tokens=5, completion_tokens=3))
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(gclient.chat.completions.create(
        model="gemini-2.5-flash", messages=MESSAGES, stream=True, **extra
    ))
    assert all(len(c.choices) == 1 for c in chunks)  # no `choices: []` usage chunk, no role-only chunk
    assert all(c.choices[0].delta.role == "assistant" for c in chunks)
    assert "".join(c.choices[0].delta.content for c in chunks) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "stop"]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    if include_usage:
        assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (5, 3, 8)
    else:
        assert last.usage is None
    assert {c.model for c in chunks} == {"gemini-2.5-flash"}


def test_gemini_tool_call_streams_whole(gemini, gclient):
    gemini.enqueue(Scenario(tool_calls=[CALL, {"name": "get_time", "arguments": "{}"}]))
    chunks = list(gclient.chat.completions.create(
        model="gemini-2.5-flash", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))
    (chunk,) = chunks  # the whole answer: both calls, the finish reason and the usage
    assert chunk.choices[0].finish_reason == "tool_calls"
    assert chunk.usage is not None
    calls = chunk.choices[0].delta.tool_calls
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "get_weather", '{"city":"Paris"}'), ("function", "get_time", "{}")
    ]
    assert all(re.fullmatch(r"function-call-\d+", c.id) for c in calls)
    assert len({c.id for c in calls}) == 2
    assert all(c.index is None for c in calls)  # Gemini omits tool_calls[].index


def test_gemini_tool_call_index_knob(gemini, gclient):
    gemini.enqueue(Scenario(tool_calls=[CALL]))
    # without an index the SDK's accumulating helper cannot assemble the call, as with the real endpoint
    # (openai/openai-python#2806); the answer itself arrived fine
    helper = gclient.chat.completions.stream(model="gemini-2.5-flash", messages=MESSAGES)
    with pytest.raises(Exception) as info, helper as stream:
        stream.until_done()
    assert not isinstance(info.value, openai.APIError)
    assert gemini.pending == 0
    gemini.gemini_tool_call_index = True
    gemini.enqueue(Scenario(tool_calls=[{**CALL, "id": "function-call-7"}]))
    with gclient.chat.completions.stream(model="gemini-2.5-flash", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("function-call-7", *CALL.values())


def test_gemini_tool_call_non_stream(gemini, gclient):
    gemini.enqueue(Scenario(tool_calls=[CALL]))
    r = gclient.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES)
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content is None
    (call,) = r.choices[0].message.tool_calls
    assert re.fullmatch(r"function-call-\d+", call.id)
    assert (call.function.name, call.function.arguments) == (CALL["name"], CALL["arguments"])


def test_gemini_embeddings_and_models(gemini, gclient):
    r = gclient.embeddings.create(model="gemini-embedding-001", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in r.data] == [embedding_vector("a"), embedding_vector("b")]
    assert r.model == "gemini-embedding-001"
    assert gemini.requests[-1].path == "/v1beta/openai/embeddings"
    assert "models/gemini-2.5-flash" in [m.id for m in gclient.models.list()]


@pytest.mark.parametrize(
    "status, exc_class, status_name",
    [
        (400, openai.BadRequestError, "INVALID_ARGUMENT"),
        (404, openai.NotFoundError, "NOT_FOUND"),
        (429, openai.RateLimitError, "RESOURCE_EXHAUSTED"),
        (500, openai.InternalServerError, "INTERNAL"),
        (503, openai.InternalServerError, "UNAVAILABLE"),
    ],
)
def test_gemini_error_is_an_array(gemini, gclient, status, exc_class, status_name):
    message = "* GenerateContentRequest.contents: contents is not specified"
    gemini.enqueue(Scenario(status=status, error_message=message))
    with pytest.raises(exc_class) as info:
        gclient.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.body == [{"error": {"code": status, "message": message, "status": status_name}}]


def test_gemini_wrong_and_missing_key(gemini):
    bad = openai.OpenAI(base_url=gemini.base_url, api_key="AIza-wrong", max_retries=0)
    with bad, pytest.raises(openai.BadRequestError) as info:
        bad.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES)
    (err,) = info.value.body
    assert err["error"]["code"] == 400
    assert err["error"]["message"] == GEMINI_BAD_KEY
    assert err["error"]["status"] == "INVALID_ARGUMENT"
    assert err["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    r = httpx.post(f"{gemini.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert r.status_code == 403
    assert r.json()[0]["error"]["status"] == "PERMISSION_DENIED"
    assert gemini.pending == 0 and len(gemini.chat_requests()) == 2  # recorded, no scenario consumed


def test_gemini_validation_and_unknown_path(gemini):
    auth = {"Authorization": f"Bearer {gemini.api_key}"}
    r = httpx.post(f"{gemini.base_url}/chat/completions", json={"model": "gemini-2.5-flash"}, headers=auth)
    assert r.status_code == 400
    assert r.json() == [{"error": {"code": 400, "message": "Missing required parameter: 'messages'.",
                                   "status": "INVALID_ARGUMENT"}}]
    r = httpx.post(f"{gemini.base_url.removesuffix('/openai')}/chat/completions", json={}, headers=auth)
    assert r.status_code == 404
    assert r.json()[0]["error"]["status"] == "NOT_FOUND"


def gemini_stream(fake: FakeOpenAI, scenario: Scenario) -> tuple[list[dict | str], bool]:
    fake.enqueue(scenario)
    body = {"model": "gemini-2.5-flash", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True}}
    return raw_stream(f"{fake.base_url}/chat/completions", {"Authorization": f"Bearer {fake.api_key}"}, body)


def test_gemini_stream_knobs(gemini):
    content = "a b c"  # three deltas, the last one finishing
    events, broke = gemini_stream(gemini, Scenario(content=content, cut_after=2))
    assert broke and len(events) == 2 and "[DONE]" not in events
    events, broke = gemini_stream(gemini, Scenario(content=content, cut_after=3))  # all deltas, then the cut
    assert broke and events[-1]["choices"][0]["finish_reason"] == "stop" and "[DONE]" not in events
    assert not gemini.disconnects  # a cut is the fake's doing, not a client disconnect

    events, broke = gemini_stream(gemini, Scenario(content=content, error_after=1, error_message="boom"))
    assert not broke and len(events) == 2
    assert events[1] == {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}

    events, _ = gemini_stream(gemini, Scenario(content=content, omit_done=True, omit_usage=True))
    assert events[-1]["choices"][0]["finish_reason"] == "stop" and "usage" not in events[-1]

    events, _ = gemini_stream(gemini, Scenario(content=content, finish_reason="length"))
    assert events[-2]["choices"][0]["finish_reason"] == "length" and events[-1] == "[DONE]"


def test_gemini_error_after_reaches_the_sdk(gemini, gclient):
    gemini.enqueue(Scenario(error_after=1, error_message="The model is overloaded."))
    with pytest.raises(openai.APIError, match="overloaded"):
        list(gclient.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES, stream=True))


# ---------------------------------------------------------------------- azure
def test_azure_chat(azure, aclient):
    azure.azure_models["prod-4o"] = "gpt-4o-2024-08-06"
    azure.enqueue(Scenario(content="Hi from Azure", prompt_tokens=4, completion_tokens=3))
    r = aclient.chat.completions.create(model="prod-4o", messages=MESSAGES)
    assert r.choices[0].message.content == "Hi from Azure"
    assert r.model == "gpt-4o-2024-08-06"  # the deployment's model, not the deployment
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, 3)
    extra = r.model_extra or {}
    assert extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert extra["prompt_filter_results"][0]["content_filter_results"]["jailbreak"] == {
        "filtered": False, "detected": False
    }
    verdicts = r.choices[0].model_extra["content_filter_results"]
    assert verdicts["hate"] == {"filtered": False, "severity": "safe"}
    (rec,) = azure.chat_requests()
    assert rec.path == "/openai/deployments/prod-4o/chat/completions"
    assert rec.query == {"api-version": API_VERSION}
    assert rec.headers["api-key"] == azure.api_key
    assert "authorization" not in rec.headers


def test_azure_model_defaults_to_the_deployment_and_is_optional(azure):
    url = azure_url(azure, "my-deployment", query=f"?api-version={API_VERSION}")
    r = httpx.post(url, json={"messages": MESSAGES}, headers={"api-key": azure.api_key})
    assert r.status_code == 200
    assert r.json()["model"] == "my-deployment"


def test_azure_stream(azure, aclient):
    azure.azure_models["prod-4o"] = "gpt-4o-2024-08-06"
    azure.enqueue(Scenario(content="Hello there", prompt_tokens=4, completion_tokens=2))
    chunks = list(aclient.chat.completions.create(
        model="prod-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))
    first, role, *deltas, finish, usage = chunks
    assert (first.choices, first.id, first.model, first.created, first.object) == ([], "", "", 0, "")
    assert first.usage is None
    (prompt_filters,) = first.model_extra["prompt_filter_results"]
    assert prompt_filters["content_filter_results"]["violence"]["filtered"] is False
    assert role.choices[0].delta.role == "assistant"
    assert role.choices[0].model_extra["content_filter_results"] == {}
    assert "".join(c.choices[0].delta.content for c in deltas) == "Hello there"
    assert all(c.choices[0].model_extra["content_filter_results"]["sexual"]["severity"] == "safe"
               for c in deltas)
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (4, 2)
    assert {c.model for c in chunks[1:]} == {"gpt-4o-2024-08-06"}


def test_azure_stream_tool_calls(azure, aclient):
    azure.enqueue(Scenario(tool_calls=[{"id": "call_1", **CALL}]))
    with aclient.chat.completions.stream(model="prod-4o", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", *CALL.values())


def test_azure_stream_knobs(azure):
    url = azure_url(azure, "prod-4o", query=f"?api-version={API_VERSION}")
    body = {"messages": MESSAGES, "stream": True}
    azure.enqueue(Scenario(content="a b c", cut_after=1))
    events, broke = raw_stream(url, {"api-key": azure.api_key}, body)
    assert broke and len(events) == 3  # prompt filters, role, one delta
    azure.enqueue(Scenario(content="a b c", error_after=0, error_message="boom", error_code="server_error"))
    events, broke = raw_stream(url, {"api-key": azure.api_key}, body)
    assert not broke
    assert (events[-1]["error"]["message"], events[-1]["error"]["code"]) == ("boom", "server_error")


def test_azure_embeddings(azure, aclient):
    azure.azure_models["emb"] = "text-embedding-3-small"
    r = aclient.embeddings.create(model="emb", input="hello", encoding_format="float")
    assert r.data[0].embedding == embedding_vector("hello")
    assert r.model == "text-embedding-3-small"
    rec = azure.requests[-1]
    assert (rec.path, rec.query) == ("/openai/deployments/emb/embeddings", {"api-version": API_VERSION})


def test_azure_wrong_key(azure):
    bad = openai.AzureOpenAI(
        azure_endpoint=azure.base_url, api_key="wrong", api_version=API_VERSION, max_retries=0
    )
    with bad, pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="prod-4o", messages=MESSAGES)
    assert info.value.body["code"] == "401"
    assert info.value.body["message"].startswith("Access denied due to invalid subscription key")
    url = azure_url(azure, "prod-4o", query=f"?api-version={API_VERSION}")
    r = httpx.post(url, json={"messages": MESSAGES}, headers={"Authorization": f"Bearer {azure.api_key}"})
    assert r.status_code == 401  # a key goes in api-key, not in a Bearer header


def test_azure_missing_api_version_and_unknown_route(azure):
    unknown = f"{azure.base_url}/v1/chat/completions?api-version={API_VERSION}"
    for url in (azure_url(azure, "prod-4o"), unknown):
        r = httpx.post(url, json={"messages": MESSAGES}, headers={"api-key": azure.api_key})
        assert r.status_code == 404
        assert r.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert azure.requests[0].query == {}
    assert azure.pending == 0


@pytest.mark.parametrize(
    "status, exc_class", [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
def test_azure_scenario_error_uses_openai_shape(azure, aclient, status, exc_class):
    azure.enqueue(Scenario(status=status, error_type="rate_limit_exceeded", error_message="Slow down",
                           headers={"retry-after": "3"}))
    with pytest.raises(exc_class) as info:
        aclient.chat.completions.create(model="prod-4o", messages=MESSAGES)
    expected = {"message": "Slow down", "type": "rate_limit_exceeded", "param": None, "code": None}
    assert info.value.body == expected
    assert info.value.response.headers["retry-after"] == "3"
