"""One chat-completions conformance suite, run by every adapter over its own fake upstream (real
servers on 127.0.0.1): OpenAI, an OpenAI-compatible server configured from TOML alone, Gemini's
OpenAI endpoint, Azure OpenAI and Anthropic. The client is always the official `openai` SDK; every
call must move the wallet by exactly the catalog price of the tokens the provider reported."""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest

from tests.conformance.adapters import OVERLOADED, Adapter, Anthropic, Call, OpenAIShaped
from tests.conftest import expected_micros
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HI = [{"role": "user", "content": "Say hello."}]
ADAPTERS = ["openai", "compatible", "gemini", "azure", "anthropic"]
AZURE_DEPLOYMENT = "prod-4o-mini"


# ---------------------------------------------------------------------------- the gateway and fakes
@pytest.fixture(scope="module")
def fakes(fake_openai):
    started = {"compatible": FakeOpenAI(api_key="local-fake-key-0123456789").start(),
               "gemini": FakeOpenAI(api_key="AIzaFakeGeminiKey0123456789abcdefghij", flavor="gemini").start(),
               "azure": FakeOpenAI(api_key="0123456789abcdef0123456789abcdef", flavor="azure").start(),
               "anthropic": FakeAnthropic().start()}
    started["azure"].azure_models[AZURE_DEPLOYMENT] = "gpt-4o-mini"
    yield {"openai": fake_openai, **started}
    for fake in started.values():
        fake.stop()


@pytest.fixture(scope="module")
def gw(serve_gateway, fakes, tmp_path_factory):
    path = tmp_path_factory.mktemp("conformance") / "aicredits.toml"
    path.write_text(f"""
[providers.local]
kind = "openai_compatible"
base_url = "{fakes['compatible'].base_url}"
api_key_env = "LOCAL_KEY"

[providers.azure]
kind = "azure"
base_url = "{fakes['azure'].base_url}"
api_key_env = "AZURE_OPENAI_API_KEY"
api_version = "2024-10-21"

[[models]]
id = "local/llama-3.1-8b"
provider = "local"
upstream_id = "meta-llama/Llama-3.1-8B-Instruct"
endpoint = "chat"
context_window = 131072
max_output_tokens = 8192
input_cost_per_1m = 0.05
output_cost_per_1m = 0.08

[[models]]
id = "local/bge-m3"
provider = "local"
upstream_id = "BAAI/bge-m3"
endpoint = "embeddings"
context_window = 8192
input_cost_per_1m = 0.01

[[models]]
id = "azure/text-embedding-3-small"
provider = "azure"
upstream_id = "emb-small"
endpoint = "embeddings"
context_window = 8191
input_cost_per_1m = 0.02

[[models]]
id = "azure/dall-e-3"
provider = "azure"
upstream_id = "dall-e-3"
endpoint = "images"
cost_per_image = {{ "1024x1024" = {{ standard = 0.040, hd = 0.080 }}, "1792x1024" = {{ standard = 0.080, hd = 0.120 }} }}

[[models]]
id = "azure/tts-1"
provider = "azure"
upstream_id = "tts-1"
endpoint = "speech"
cost_per_1m_chars = 15.0

[[models]]
id = "azure/whisper-1"
provider = "azure"
upstream_id = "whisper-1"
endpoint = "transcription"
cost_per_minute = 0.006

[[models]]
id = "azure/gpt-4o-mini"
provider = "azure"
upstream_id = "{AZURE_DEPLOYMENT}"
endpoint = "chat"
context_window = 128000
max_output_tokens = 16384
input_cost_per_1m = 0.165
output_cost_per_1m = 0.66
""")
    return serve_gateway(env={
        "AICREDITS_CONFIG": str(path), "LOCAL_KEY": fakes["compatible"].api_key,
        "AZURE_OPENAI_API_KEY": fakes["azure"].api_key,
        "GEMINI_API_KEY": fakes["gemini"].api_key, "GEMINI_BASE_URL": fakes["gemini"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key, "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url})


def make_adapter(name: str, fakes: dict) -> Adapter:
    if name == "anthropic":
        return Anthropic("anthropic/claude-haiku-4.5", fakes[name])
    model = {"openai": "openai/gpt-4o-mini", "compatible": "local/llama-3.1-8b",
             "gemini": "google/gemini-2.5-flash", "azure": "azure/gpt-4o-mini"}[name]
    return OpenAIShaped(name, model, fakes[name])


@pytest.fixture(params=ADAPTERS)
def ad(request, fakes) -> Adapter:
    adapter = make_adapter(request.param, fakes)
    adapter.reset()
    yield adapter
    adapter.reset()


@pytest.fixture(scope="module")
def account(gw):
    email = f"conformance-{uuid.uuid4().hex[:8]}@example.com"
    return {**gw.create_key(credits="1000", email=email), "email": email}


@pytest.fixture(scope="module")
def catalog(gw):
    return gw.catalog()


@pytest.fixture
def client(gw, account) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=account["key"], max_retries=0, timeout=20)


@pytest.fixture
def bill(gw, account):
    """Micro-INR charged since the test began (waits for the settle of a stream to land)."""
    def spent() -> int:
        return round(gw.credits(account["key"])["total_spent"] * 1_000_000)
    start = spent()
    return lambda: spent() - start


def price(catalog: dict, ad: Adapter, prompt: int, completion: int) -> int:
    return expected_micros(catalog[ad.model], prompt, completion)


def inr(micros: int) -> str:
    return f"{micros // 10**6}.{micros % 10**6:06d}"


# ---------------------------------------------------------------------------- plain text
def test_non_stream(ad, client, catalog, bill):
    ad.reply("Hello there, friend.", prompt=31, completion=5)
    raw = client.chat.completions.with_raw_response.create(model=ad.model, messages=HI, max_tokens=64)
    done = raw.parse()
    want = price(catalog, ad, 31, 5)
    assert done.choices[0].message.content == "Hello there, friend."
    assert done.choices[0].finish_reason == "stop" and done.choices[0].message.role == "assistant"
    assert done.model and done.object == "chat.completion"   # the reference shows the provider's name
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (31, 5, 36)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert bill() == want


def test_stream_with_usage(ad, client, catalog, bill):
    ad.reply("One two three four five.", prompt=40, completion=6)
    chunks = list(client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64, stream=True,
                                                 stream_options={"include_usage": True}))
    want = price(catalog, ad, 40, 6)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four five."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].choices == [] and usage is not None and chunks[-1] is usage[0]
    assert (usage[0].usage.prompt_tokens, usage[0].usage.completion_tokens) == (40, 6)
    assert usage[0].usage.model_extra["cost"] == pytest.approx(want / 1e6, abs=1e-9)
    assert len({c.model for c in chunks}) == 1 and chunks[0].model   # no empty or mixed models
    assert bill() == want


def test_stream_without_usage_still_bills_exactly(ad, client, catalog, bill):
    ad.reply("Quiet stream.", prompt=12, completion=3)
    chunks = list(client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Quiet stream."
    assert all(c.usage is None for c in chunks)
    assert bill() == price(catalog, ad, 12, 3)


# ---------------------------------------------------------------------------- tools
def test_tools_non_stream(ad, client, catalog, bill):
    ad.tool_reply([Call("call_w1", "get_weather", {"city": "Paris"}),
                   Call("call_w2", "get_weather", {"city": "Pune"})], prompt=80, completion=30)
    done = client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64, tools=[WEATHER],
                                          tool_choice="auto")
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [(t.type, t.function.name, json.loads(t.function.arguments)) for t in choice.message.tool_calls]
    assert calls == [("function", "get_weather", {"city": "Paris"}), ("function", "get_weather", {"city": "Pune"})]
    assert all(t.id for t in choice.message.tool_calls)
    assert len({t.id for t in choice.message.tool_calls}) == 2
    assert ad.tools_sent(ad.bodies()[-1]) == ["get_weather"]
    assert bill() == price(catalog, ad, 80, 30)


def test_tools_stream(ad, client, catalog, bill):
    ad.tool_reply([Call("call_s1", "get_weather", {"city": "Chennai"})], prompt=70, completion=20)
    calls: dict[int, dict] = {}
    finish = []
    for chunk in client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64, tools=[WEATHER],
                                                stream=True):
        for choice in chunk.choices:
            finish += [choice.finish_reason] if choice.finish_reason else []
            for d in choice.delta.tool_calls or ():
                call = calls.setdefault(d.index, {"id": "", "name": "", "args": ""})
                call["id"] += d.id or ""
                call["name"] += (d.function.name or "") if d.function else ""
                call["args"] += (d.function.arguments or "") if d.function else ""
    assert list(calls) == [0] and finish == ["tool_calls"]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["args"]) == {"city": "Chennai"}
    assert bill() == price(catalog, ad, 70, 20)


def test_tool_result_round_trip(ad, client, catalog, bill):
    ad.reply("It is 31 degrees in Chennai.", prompt=95, completion=9)
    messages = [*HI,
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_rt1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Chennai\"}"}}]},
                {"role": "tool", "tool_call_id": "call_rt1", "content": "31C, humid"}]
    done = client.chat.completions.create(model=ad.model, messages=messages, max_tokens=64, tools=[WEATHER])
    assert done.choices[0].message.content == "It is 31 degrees in Chennai."
    assert ad.tool_result_sent(ad.bodies()[-1], "call_rt1", "31C, humid")
    assert bill() == price(catalog, ad, 95, 9)


# ---------------------------------------------------------------------------- JSON mode
def test_json_mode(ad, client, catalog, bill):
    answer = {"city": "Mumbai", "temperature_c": 29, "tags": ["humid", "coastal"]}
    ad.json_reply(answer, prompt=25, completion=18)
    done = client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64,
                                          response_format={"type": "json_object"})
    assert json.loads(done.choices[0].message.content) == answer
    assert done.choices[0].finish_reason == "stop" and done.choices[0].message.tool_calls is None
    assert ad.json_mode_sent(ad.bodies()[-1])
    assert bill() == price(catalog, ad, 25, 18)


def test_json_mode_stream(ad, client, catalog, bill):
    answer = {"ok": True, "items": [1, 2, 3]}
    ad.json_reply(answer, prompt=25, completion=12)
    chunks = list(client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64, stream=True,
                                                 response_format={"type": "json_object"}))
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)) == answer
    assert all(not c.choices or not c.choices[0].delta.tool_calls for c in chunks)
    assert bill() == price(catalog, ad, 25, 12)


# ---------------------------------------------------------------------------- errors
def test_invalid_request_passes_the_provider_message_and_is_free(ad, client, bill):
    ad.fail(400, "Unknown field 'frobnicate' in the request.")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64)
    err = info.value.body
    assert err["type"] == "invalid_request_error" and err["code"] == 400
    assert "Unknown field 'frobnicate' in the request." in err["message"]
    assert bill() == 0


def test_rate_limit_is_429_with_retry_after_and_free(ad, client, bill):
    ad.fail(429, "Slow down.", retry_after="7")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64)
    assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "7"
    assert info.value.body["type"] == "rate_limit_error" and "Slow down." in info.value.body["message"]
    assert bill() == 0


def test_overloaded_is_503_with_retry_after_and_free(ad, client, bill):
    ad.fail(OVERLOADED[ad.name], "The model is overloaded. Please try again later.", retry_after="11")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64)
    assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "11"
    assert info.value.body["type"] == "service_unavailable"
    assert "overloaded" in info.value.body["message"]
    assert bill() == 0


def test_provider_key_rejection_is_502_and_never_echoes_a_key(ad, client, bill):
    leaked = ad.fake.api_key
    ad.fail(401, f"Incorrect API key provided: {leaked}.")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=ad.model, messages=HI, max_tokens=64)
    assert info.value.status_code == 502 and info.value.body["type"] == "upstream_error"
    assert leaked not in info.value.response.text and "operator" in info.value.body["message"]
    assert bill() == 0


def test_error_on_stream_open_is_a_plain_http_error(ad, gw, account, bill):
    ad.fail(400, "Bad stop sequence.")
    r = httpx.post(gw.v1 + "/chat/completions", timeout=20,
                   json={"model": ad.model, "messages": HI, "max_tokens": 64, "stream": True},
                   headers={"Authorization": f"Bearer {account['key']}"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert "Bad stop sequence." in r.json()["error"]["message"]
    assert bill() == 0


# the operator's account ids, as OpenAI (organization, project) and Anthropic (organization UUID)
# put them in their messages; none may reach a client
ACCOUNT_IDS = ("org-8bKzPvQ3xR1mN2jL5tY7wC9a", "proj_Ab12Cd34Ef56Gh78Ij90Kl", "5f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8")
LEAKY = (f"Rate limit reached in organization {ACCOUNT_IDS[0]} (project {ACCOUNT_IDS[1]}, account "
         f"{ACCOUNT_IDS[2]}) on tokens per min. Please try again in 1s.")
SEEN = "Rate limit reached in organization [redacted] (project [redacted], account [redacted]) on tokens per min."


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [404, 429, 500, "overloaded"])
def test_provider_messages_reach_the_client_without_account_ids(ad, gw, account, bill, status, stream):
    status = OVERLOADED[ad.name] if status == "overloaded" else status
    ad.fail(status, LEAKY)
    r = httpx.post(gw.v1 + "/chat/completions", timeout=20,
                   json={"model": ad.model, "messages": HI, "max_tokens": 64, "stream": stream},
                   headers={"Authorization": f"Bearer {account['key']}"})
    assert r.status_code == {404: 404, 429: 429, 500: 502}.get(status, 503), r.text
    assert SEEN in r.json()["error"]["message"]          # the provider's words still reach the client
    assert not any(i in r.text for i in ACCOUNT_IDS), r.text
    assert bill() == 0


def test_an_error_event_before_the_first_byte_carries_no_account_ids(ad, gw, account, bill):
    ad.fail_in_stream(LEAKY)
    with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=20,
                      json={"model": ad.model, "messages": HI, "max_tokens": 64, "stream": True},
                      headers={"Authorization": f"Bearer {account['key']}"}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    errors = [json.loads(line[6:]) for line in body.splitlines()
              if line.startswith("data: {") and '"error"' in line]
    assert len(errors) == 1 and SEEN in errors[0]["error"]["message"], body
    assert not any(i in body for i in ACCOUNT_IDS), body
    assert bill() == 0


# ---------------------------------------------------------------------------- a cut stream
def test_cut_stream_ends_with_an_error_event_and_bills_what_was_delivered(ad, gw, account, catalog, bill):
    ad.cut("alpha beta gamma delta epsilon zeta eta theta", after=3, prompt=50)
    events, text = [], ""
    with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=20,
                      json={"model": ad.model, "messages": HI, "max_tokens": 64, "stream": True},
                      headers={"Authorization": f"Bearer {account['key']}"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    for ev in events:
        for choice in ev.get("choices") or ():
            text += choice["delta"].get("content") or ""
    assert text and "alpha beta gamma delta epsilon zeta eta theta".startswith(text)
    assert "error" in events[-1] and events[-1]["error"]["type"] == "upstream_error"
    rows = gw.usage(account["email"], limit=1)
    row = rows[0] if isinstance(rows, list) else rows["data"][0]
    assert row["end_state"] == "upstream_cut"
    # the charge is the catalog price of the recorded counts, and no more than a full answer would cost
    assert bill() == price(catalog, ad, row["prompt_tokens"], row["completion_tokens"]) > 0
    assert row["completion_tokens"] >= 1
    if ad.name == "anthropic":   # message_start already told the gateway the real prompt count
        assert row["prompt_tokens"] == 50


# ---------------------------------------------------------------------------- the provider's dialect
def test_gemini_prefix_reaches_the_same_model(fakes, client, catalog, bill):
    ad = make_adapter("gemini", fakes)
    ad.reset()
    ad.reply("Namaste.", prompt=9, completion=2)
    done = client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=HI, max_tokens=16)
    assert done.choices[0].message.content == "Namaste."
    assert ad.bodies()[-1]["model"] == "gemini-2.5-flash"
    assert fakes["gemini"].chat_requests()[-1].path == "/v1beta/openai/chat/completions"
    assert bill() == price(catalog, ad, 9, 2)


def test_azure_gets_its_deployment_path_api_version_and_api_key_header(fakes, client):
    ad = make_adapter("azure", fakes)
    ad.reset()
    ad.reply("From Azure.", prompt=5, completion=3)
    client.chat.completions.create(model=ad.model, messages=HI, max_tokens=16)
    rec = fakes["azure"].chat_requests()[-1]
    assert rec.path == f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
    assert rec.query["api-version"] == "2024-10-21"
    assert rec.headers["api-key"] == fakes["azure"].api_key and "authorization" not in rec.headers


def test_compatible_provider_gets_its_own_upstream_id_and_bearer_key(fakes, client):
    ad = make_adapter("compatible", fakes)
    ad.reset()
    ad.reply("Local.", prompt=5, completion=2)
    client.chat.completions.create(model=ad.model, messages=HI, max_tokens=16)
    rec = fakes["compatible"].chat_requests()[-1]
    assert rec.body["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert rec.headers["authorization"] == f"Bearer {fakes['compatible'].api_key}"


# ---------------------------------------------------------------------------- embeddings
EMBEDDERS = {"openai": "openai/text-embedding-3-small", "compatible": "local/bge-m3",
             "azure": "azure/text-embedding-3-small", "gemini": "google/gemini-embedding-001"}


@pytest.mark.parametrize("name", list(EMBEDDERS))
@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_embeddings(name, encoding, fakes, client, catalog, bill):
    from tests.fakes.openai_upstream import Scenario, embedding_vector
    fake = fakes[name]
    fake.reset()
    fake.enqueue(Scenario(prompt_tokens=14))
    model = EMBEDDERS[name]
    # the SDK asks for base64 unless told otherwise, and decodes it back to floats
    kw = {"encoding_format": "float"} if encoding == "float" else {}
    out = client.embeddings.create(model=model, input=["chai", "filter coffee"], **kw)
    assert [d.embedding for d in out.data] == [embedding_vector("chai"), embedding_vector("filter coffee")]
    assert out.usage.prompt_tokens == 14
    sent = [r for r in fake.requests if r.path.endswith("/embeddings")][-1]
    assert sent.body["input"] == ["chai", "filter coffee"] and sent.body.get("encoding_format", "float") == encoding
    assert bill() == expected_micros(catalog[model], 14, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_thinking_tokens_are_billed_as_output(stream, fakes, client, catalog, bill):
    """Gemini leaves thinking out of completion_tokens but counts it in total_tokens (and bills
    it as output): the gateway reports and charges it the way OpenAI reports reasoning."""
    from tests.fakes.openai_upstream import Scenario
    fake = fakes["gemini"]
    fake.reset()
    fake.enqueue(Scenario(content="42.", prompt_tokens=7, completion_tokens=40, reasoning_tokens=38))
    model = "google/gemini-2.5-flash"
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=HI, max_tokens=256, stream=True,
                                                     stream_options={"include_usage": True}))
        usage = [c.usage for c in chunks if c.usage is not None]
        assert len(usage) == 1
        usage = usage[0]
    else:
        usage = client.chat.completions.create(model=model, messages=HI, max_tokens=256).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 40, 47)
    assert usage.completion_tokens_details.reasoning_tokens == 38
    assert bill() == expected_micros(catalog[model], 7, 40)


# ---------------------------------------------------------------------------- /v1/responses
def test_responses(ad, client, catalog, bill):
    """Passed through to OpenAI and Azure, translated to chat for every other provider."""
    ad.reply("Hello via responses.", prompt=22, completion=4)
    r = client.responses.create(model=ad.model, input="Say hello.", max_output_tokens=64)
    assert r.output_text == "Hello via responses." and r.status == "completed"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (22, 4)
    assert bill() == price(catalog, ad, 22, 4)


def test_responses_stream(ad, client, catalog, bill):
    ad.reply("Streamed via responses.", prompt=26, completion=5)
    events = list(client.responses.create(model=ad.model, input="Say hello.", max_output_tokens=64,
                                          stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Streamed via responses."
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens) == (26, 5)
    assert bill() == price(catalog, ad, 26, 5)


def test_azure_responses_go_to_its_responses_path_with_the_deployment(fakes, client):
    ad = make_adapter("azure", fakes)
    ad.reset()
    ad.reply("Azure responses.", prompt=5, completion=3)
    assert client.responses.create(model=ad.model, input="Hi").output_text == "Azure responses."
    rec = [r for r in fakes["azure"].requests if r.path.endswith("/responses")][-1]
    assert rec.path == "/openai/responses" and rec.query["api-version"] == "2024-10-21"
    assert rec.body["model"] == AZURE_DEPLOYMENT and rec.headers["api-key"] == fakes["azure"].api_key


@pytest.mark.parametrize("reported", [200_000, 200_001])
def test_long_prompt_is_priced_at_its_tier(reported, fakes, client, catalog, bill):
    """Gemini 2.5 Pro costs more above 200k prompt tokens: the hold reaches the tier (its bound
    passes 200k) and the charge is exactly the tier the reported count lands in."""
    from tests.fakes.openai_upstream import Scenario
    model = "google/gemini-2.5-pro"
    assert catalog[model]["tiers"][0]["above_prompt_tokens"] == 200_000
    fake = fakes["gemini"]
    fake.reset()
    fake.enqueue(Scenario(content="Summary.", prompt_tokens=reported, completion_tokens=300))
    long_text = "lorem ipsum " * 20_000   # 240,000 bytes: the prompt bound passes the threshold
    done = client.chat.completions.create(model=model, messages=[{"role": "user", "content": long_text}],
                                          max_tokens=500)
    assert done.usage.prompt_tokens == reported
    want = expected_micros(catalog[model], reported, 300)
    base = expected_micros({k: v for k, v in catalog[model].items() if k != "tiers"}, reported, 300)
    assert (want > base) == (reported > 200_000)
    assert bill() == want


# ---------------------------------------------------------------------------- images and audio
MEDIA = {"openai": ("openai/dall-e-3", "openai/tts-1", "openai/whisper-1", "/v1/{}"),
         "azure": ("azure/dall-e-3", "azure/tts-1", "azure/whisper-1", "/openai/deployments/{}")}


@pytest.mark.parametrize("name", list(MEDIA))
def test_images_speech_and_transcription(name, fakes, client, catalog, bill):
    from tests.api.media_helpers import image_micros, make_wav, speech_micros, transcription_micros
    from tests.fakes.audio_files import decode
    from tests.fakes.openai_media import TRANSCRIPT, speech_seconds
    image_model, tts_model, stt_model, path = MEDIA[name]
    fake = fakes[name]
    fake.reset()

    img = client.images.generate(model=image_model, prompt="A tea garden in Munnar", size="1792x1024",
                                 quality="hd")
    assert len(img.data) == 1 and img.data[0].url
    want = image_micros(catalog[image_model], "1792x1024", "hd", 1)
    assert bill() == want

    text = "Good morning from the gateway."
    audio = client.audio.speech.create(model=tts_model, voice="alloy", input=text, response_format="wav")
    codec, seconds, _ = decode(audio.content, "wav")      # a WAV as long as the fake spoke the text
    assert codec == "pcm_s16le" and seconds == speech_seconds(text)
    want += speech_micros(catalog[tts_model], len(text))
    assert bill() == want

    out = client.audio.transcriptions.create(model=stt_model, file=("note.wav", make_wav(2.3), "audio/wav"))
    assert out.text == TRANSCRIPT
    want += transcription_micros(catalog[stt_model], 3)
    assert bill() == want

    sent = [r.path for r in fake.requests]
    if name == "azure":
        assert sent == [path.format("dall-e-3/images/generations"), path.format("tts-1/audio/speech"),
                        path.format("whisper-1/audio/transcriptions")]
        assert all(r.query["api-version"] == "2024-10-21" and r.headers["api-key"] == fake.api_key
                   for r in fake.requests)
    else:
        assert sent == ["/v1/images/generations", "/v1/audio/speech", "/v1/audio/transcriptions"]
