"""Odd upstream answers are billed by the rules of docs/billing.md, in-process (tests/inproc.py)
against real fake upstreams:

- a usage object without valid prompt and completion counts is no usage: the estimator bills the
  call (chat, streams, responses, embeddings, Anthropic), with one warning naming provider and model;
  float counts are rounded up;
- a stream whose choice finishes with "error": nothing without output, an upstream cut with output;
- a malformed 200 answer: 502 upstream_error, its reported usage (if valid) or nothing, hold released;
- legacy function_call deltas are output;
- bad client input is a 400 (nesting limit, odd multipart headers), never a 500.

Every call is checked on the wallet (total_spent, held back to 0) and on its usage row.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from tests.api.media_helpers import make_wav, transcription_micros
from tests.conftest import expected_micros
from tests.fakes.anthropic_upstream import FakeAnthropic, split_text
from tests.fakes.anthropic_upstream import Scenario as AScenario
from tests.fakes.openai_upstream import Scenario, split_content
from tests.inproc import InProcessGateway, sse_data, sse_events

MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4.6"
LOCAL = "local/gpt-4o-mini"
EMBED = "openai/text-embedding-3-small"
MESSAGES = [{"role": "user", "content": "Tell me a story"}]
PROMPT = 12    # the estimator: "user" + "Tell me a story" = 19 bytes -> ceil(19/4) + 4 + 3
STORY = "alpha beta gamma delta epsilon zeta eta theta"
INCOMPLETE = [{}, {"prompt_tokens": None, "completion_tokens": None}, {"prompt_tokens": -5, "completion_tokens": -3},
              {"prompt_tokens": 40}, {"prompt_tokens": "40", "completion_tokens": "7"}, "forty"]
INCOMPLETE_IDS = ["empty", "nulls", "negative", "no-completion", "strings", "not-an-object"]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fake_anthropic():
    f = FakeAnthropic().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fake_openai, fake_anthropic):
    work = tmp_path_factory.mktemp("answers")
    cfg = work / "aicredits.toml"
    cfg.write_text(f"""
[providers.local]
kind = "openai_compatible"
base_url = "{fake_openai.base_url}"
api_key_env = "LOCAL_KEY"

[[models]]
id = "{LOCAL}"
provider = "local"
upstream_id = "gpt-4o-mini"
endpoint = "chat"
context_window = 128000
max_output_tokens = 4096
input_cost_per_1m = 0.5
output_cost_per_1m = 1.5
""")
    g = InProcessGateway(work, {"OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_API_KEY": fake_openai.api_key,
                                "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
                                "ANTHROPIC_API_KEY": fake_anthropic.api_key, "AICREDITS_CONFIG": str(cfg),
                                "LOCAL_KEY": fake_openai.api_key}).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def catalog(gw):
    return gw.catalog()


@pytest.fixture
def key(gw):
    return gw.create_key(credits_micros=1000 * 10**6)


@pytest.fixture
def anthropic_up(fake_anthropic):
    fake_anthropic.reset()
    yield fake_anthropic
    fake_anthropic.reset()


@pytest.fixture
def warnings(caplog):
    """The gateway's warnings about incomplete usage."""
    caplog.set_level(logging.WARNING, logger="aicredits.usage")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "aicredits.usage"
                    and "without valid token counts" in r.getMessage()]


# ---------------------------------------------------------------- helpers
def rid() -> str:
    return "ans-" + uuid.uuid4().hex


def chat(gw, key, request_id: str, model: str = MODEL, **extra):
    return gw.post("/v1/chat/completions", key, json={"model": model, "messages": MESSAGES, **extra},
                   headers={"x-request-id": request_id})


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def quarter(n_bytes: int, fragments: int = 0) -> int:
    """The documented estimator: max(fragments, ceil(bytes / 4))."""
    return max(fragments, -(-n_bytes // 4))


def pieces_estimate(pieces: list[str]) -> int:
    return quarter(sum(len(p.encode()) for p in pieces), len(pieces))


def settled(gw, key, request_id: str, charge: int, end_state: str, status: int | None = None,
            tokens: tuple[int, int] | None = None, spent: int | None = None) -> dict:
    """The call was charged exactly `charge` micro-INR (the key's wallet `spent` in all, by default
    this one call) and nothing is held; the usage row agrees."""
    cr = gw.credits(key)
    assert cr["held"] == 0 and cr["key"]["held"] == 0, cr
    assert round(cr["total_spent"] * 10**6) == (charge if spent is None else spent), (cr, charge, spent)
    row = gw.usage_row(key, request_id)
    assert row["end_state"] == end_state, row
    assert row["cost"] == charge, row
    if status is not None:
        assert row["status"] == status, row
    if tokens is not None:
        assert (row["prompt_tokens"], row["completion_tokens"]) == tokens, row
    return row


def assert_error(r, status: int, type_: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert {"message", "type", "code"} <= set(err) <= {"message", "type", "code", "param"}, err
    assert err["type"] == type_ and err["code"] == status, err
    return err


def assert_error_tail(events: list) -> dict:
    """One error event (error + finish_reason "error") just before the one [DONE] that ends the stream."""
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1, events[-3:]
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1 and errors[0] is events[-2], events[-3:]
    tail = events[-2]
    assert tail["error"]["type"] == "upstream_error" and tail["error"]["code"] == 502, tail
    assert tail["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    return tail


def content_of(events: list) -> list[str]:
    return [c["delta"]["content"] for e in events if isinstance(e, dict) and "error" not in e
            for c in e.get("choices") or () if (c.get("delta") or {}).get("content")]


# ---------------------------------------------------------------- 1. incomplete usage: the estimator bills
@pytest.mark.parametrize("usage", INCOMPLETE, ids=INCOMPLETE_IDS)
def test_incomplete_usage_non_streaming_is_billed_by_the_estimator(gw, upstream, key, catalog, warnings, usage):
    upstream.enqueue(Scenario(content="Once upon a time.", usage=usage))
    r = chat(gw, key, request_id := rid())
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    completion = quarter(len(compact([message])))   # the JSON of the choices' messages
    want = expected_micros(catalog[MODEL], PROMPT, completion)
    assert want > 0
    assert r.headers["x-aicredits-cost"] == f"0.{want:06d}"
    settled(gw, key, request_id, want, "completed", 200, (PROMPT, completion))
    logged = warnings()
    assert len(logged) == 1 and "openai" in logged[0] and MODEL in logged[0], logged


def test_float_counts_are_rounded_up_and_not_warned(gw, upstream, key, catalog, warnings):
    upstream.enqueue(Scenario(usage={"prompt_tokens": 40.2, "completion_tokens": 6.5, "total_tokens": 46.7}))
    r = chat(gw, key, request_id := rid())
    assert r.status_code == 200
    settled(gw, key, request_id, expected_micros(catalog[MODEL], 41, 7), "completed", 200, (41, 7))
    assert warnings() == []


@pytest.mark.parametrize("usage", INCOMPLETE, ids=INCOMPLETE_IDS)
def test_incomplete_usage_in_a_stream_is_billed_by_the_estimator(gw, upstream, key, catalog, warnings, usage):
    """The usage chunk the client sees carries the estimate and its cost: what was charged."""
    upstream.enqueue(Scenario(content=STORY, usage=usage))
    r = chat(gw, key, request_id := rid(), stream=True, stream_options={"include_usage": True})
    events = sse_data(r.text)
    assert "".join(content_of(events)) == STORY and events[-1] == "[DONE]"
    completion = pieces_estimate(split_content(STORY))
    want = expected_micros(catalog[MODEL], PROMPT, completion)
    shown = [e["usage"] for e in events if isinstance(e, dict) and e.get("usage")]
    assert len(shown) == 1, events
    assert (shown[0]["prompt_tokens"], shown[0]["completion_tokens"]) == (PROMPT, completion)
    assert round(shown[0]["cost"] * 10**6) == want
    settled(gw, key, request_id, want, "completed", 200, (PROMPT, completion))
    logged = warnings()
    assert len(logged) == 1 and "openai" in logged[0] and MODEL in logged[0], logged


def test_incomplete_usage_on_native_responses(gw, upstream, key, catalog, warnings):
    body = {"model": MODEL, "input": "Tell me a story"}
    upstream.enqueue(Scenario(content="Once upon a time.", usage={"input_tokens": None, "output_tokens": 3}))
    r = gw.post("/v1/responses", key, json=body, headers={"x-request-id": (first := rid())})
    assert r.status_code == 200, r.text
    completion = quarter(len(compact(r.json()["output"])))
    want = expected_micros(catalog[MODEL], PROMPT, completion)
    settled(gw, key, first, want, "completed", 200, (PROMPT, completion))
    # streamed: the terminal event shows the estimate and its cost
    upstream.enqueue(Scenario(content=STORY, usage={}))
    r = gw.post("/v1/responses", key, json={**body, "stream": True}, headers={"x-request-id": (second := rid())})
    terminal = [d for name, d in sse_events(r.text) if name == "response.completed"]
    assert len(terminal) == 1, r.text
    completion2 = pieces_estimate(split_content(STORY))
    want2 = expected_micros(catalog[MODEL], PROMPT, completion2)
    usage = terminal[0]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (PROMPT, completion2)
    assert round(usage["cost"] * 10**6) == want2
    settled(gw, key, second, want2, "completed", 200, (PROMPT, completion2), spent=want + want2)
    assert len(warnings()) == 2


@pytest.mark.parametrize("usage", [{}, {"prompt_tokens": None, "total_tokens": 4}, {"prompt_tokens": -4}],
                         ids=["empty", "null", "negative"])
def test_incomplete_embeddings_usage_is_billed_by_the_estimator(gw, upstream, key, catalog, warnings, usage):
    upstream.enqueue(Scenario(usage=usage))
    r = gw.post("/v1/embeddings", key, json={"model": EMBED, "input": ["hello world", "hi"]},
                headers={"x-request-id": (request_id := rid())})
    assert r.status_code == 200, r.text
    tokens = quarter(11) + quarter(2)   # ceil(bytes / 4) per input string
    want = expected_micros({**catalog[EMBED], "output_cost_per_1m": 0}, tokens, 0)
    settled(gw, key, request_id, want, "completed", 200, (tokens, 0))
    assert len(warnings()) == 1


def test_incomplete_anthropic_usage_follows_the_same_rule(gw, anthropic_up, key, catalog, warnings):
    entry = catalog[CLAUDE]
    # no valid counts at all: the estimator bills prompt and completion
    anthropic_up.enqueue(AScenario(text="Once upon a time.", input_tokens=None, output_tokens=None))
    r = chat(gw, key, first := rid(), model=CLAUDE)
    assert r.status_code == 200, r.text
    completion = quarter(len(compact([r.json()["choices"][0]["message"]])))
    charged = want = expected_micros(entry, PROMPT, completion)
    settled(gw, key, first, want, "completed", 200, (PROMPT, completion))
    assert len(warnings()) == 1 and "anthropic" in warnings()[0] and CLAUDE in warnings()[0]
    # fractions are rounded up
    anthropic_up.enqueue(AScenario(text="Once upon a time.", input_tokens=20.5, output_tokens=3.2))
    r = chat(gw, key, second := rid(), model=CLAUDE)
    charged += (want := expected_micros(entry, 21, 4))
    settled(gw, key, second, want, "completed", 200, (21, 4), spent=charged)
    # streamed with a valid input count but no valid output count: the prompt as reported, the
    # output estimated from what was relayed
    anthropic_up.enqueue(AScenario(text=STORY, input_tokens=30, output_tokens=None))
    r = chat(gw, key, third := rid(), model=CLAUDE, stream=True, stream_options={"include_usage": True})
    events = sse_data(r.text)
    assert "".join(content_of(events)) == STORY and events[-1] == "[DONE]"
    completion = pieces_estimate(split_text(STORY))
    charged += (want := expected_micros(entry, 30, completion))
    settled(gw, key, third, want, "completed", 200, (30, completion), spent=charged)
    assert len(warnings()) == 2


# ---------------------------------------------------------------- 2. a stream's error finish
@pytest.mark.parametrize("include_usage", [True, False])
def test_error_finish_without_output_charges_nothing(gw, upstream, key, include_usage):
    upstream.enqueue(Scenario(content="", finish_reason="error"))
    r = chat(gw, key, request_id := rid(), stream=True, stream_options={"include_usage": include_usage})
    assert r.status_code == 200
    events = sse_data(r.text)
    assert content_of(events) == []
    assert_error_tail(events)
    for e in events:   # a usage chunk, if shown, says what was charged: nothing
        if isinstance(e, dict) and e.get("usage"):
            assert e["usage"]["cost"] == 0
    settled(gw, key, request_id, 0, "zero_output_error", 502)


@pytest.mark.parametrize("include_usage", [True, False])
def test_error_finish_after_output_is_billed_as_an_upstream_cut(gw, upstream, key, catalog, include_usage):
    upstream.enqueue(Scenario(content=STORY, finish_reason="error", prompt_tokens=40, completion_tokens=6))
    r = chat(gw, key, request_id := rid(), stream=True, stream_options={"include_usage": include_usage})
    events = sse_data(r.text)
    assert "".join(content_of(events)) == STORY
    assert_error_tail(events)
    want = expected_micros(catalog[MODEL], 40, 6)    # the usage chunk the upstream sent
    if include_usage:
        shown = [e["usage"] for e in events if isinstance(e, dict) and e.get("usage")]
        assert len(shown) == 1 and round(shown[0]["cost"] * 10**6) == want
    settled(gw, key, request_id, want, "upstream_cut", 502, (40, 6))


# ---------------------------------------------------------------- 6. malformed answers
MALFORMED = [
    (lambda p: {**p, "choices": {"0": p["choices"][0]}}, "'choices' is not an array"),
    (lambda p: {**p, "choices": [{"index": 0, "finish_reason": "stop"}]}, "choices[0].message is not an object"),
    (lambda p: {**p, "choices": []}, "'choices' is empty"),
    (lambda p: {**p, "choices": ["text"]}, "choices[0] is not an object"),
    (lambda p: {**p, "choices": [{**p["choices"][0], "message": {"role": "assistant", "content": 5}}]},
     "content is not a string"),
]


@pytest.mark.parametrize("mangle,problem", MALFORMED, ids=["object", "no-message", "empty", "string", "content"])
def test_malformed_answer_is_502_billed_by_its_reported_usage(gw, upstream, key, catalog, mangle, problem):
    upstream.enqueue(Scenario(mangle=mangle, prompt_tokens=50, completion_tokens=8))
    r = chat(gw, key, request_id := rid())
    err = assert_error(r, 502, "upstream_error")
    assert problem in err["message"] and "openai" in err["message"], err
    settled(gw, key, request_id, expected_micros(catalog[MODEL], 50, 8), "malformed_response", 502, (50, 8))


def test_malformed_answer_without_usage_charges_nothing(gw, upstream, key):
    calls = []
    for mangle, _ in MALFORMED[:2]:
        upstream.enqueue(Scenario(mangle=mangle, omit_usage=True))
        r = chat(gw, key, request_id := rid())
        assert_error(r, 502, "upstream_error")
        calls.append(request_id)
    upstream.enqueue(Scenario(mangle=MALFORMED[0][0], usage={"prompt_tokens": None}))
    assert_error(chat(gw, key, request_id := rid()), 502, "upstream_error")
    calls.append(request_id)
    for request_id in calls:
        settled(gw, key, request_id, 0, "malformed_response", 502)


def test_malformed_answer_on_translated_responses_is_502(gw, upstream, key, catalog):
    """/v1/responses for a non-OpenAI provider: the chat answer is translated before the call is settled."""
    upstream.enqueue(Scenario(mangle=MALFORMED[0][0], prompt_tokens=50, completion_tokens=8))
    r = gw.post("/v1/responses", key, json={"model": LOCAL, "input": "hi"}, headers={"x-request-id": (a := rid())})
    assert_error(r, 502, "upstream_error")
    want = expected_micros(catalog[LOCAL], 50, 8)
    settled(gw, key, a, want, "malformed_response", 502)
    assert want > 0
    # a tool call the translation cannot read
    bad_call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": ["get_weather"]}]}
    upstream.enqueue(Scenario(mangle=lambda p: {**p, "choices": [{**p["choices"][0], "message": bad_call}]},
                              omit_usage=True))
    r = gw.post("/v1/responses", key, json={"model": LOCAL, "input": "hi"}, headers={"x-request-id": (b := rid())})
    assert_error(r, 502, "upstream_error")
    settled(gw, key, b, 0, "malformed_response", 502, spent=want)


def test_malformed_native_response_is_502(gw, upstream, key, catalog):
    upstream.enqueue(Scenario(mangle=lambda p: {**p, "output": {"type": "message"}}, prompt_tokens=30,
                              completion_tokens=5))
    r = gw.post("/v1/responses", key, json={"model": MODEL, "input": "hi"}, headers={"x-request-id": (a := rid())})
    err = assert_error(r, 502, "upstream_error")
    assert "'output'" in err["message"]
    settled(gw, key, a, expected_micros(catalog[MODEL], 30, 5), "malformed_response", 502, (30, 5))


# ---------------------------------------------------------------- 7. legacy function_call deltas are output
def test_stream_cut_after_function_call_fragments_is_an_upstream_cut(gw, upstream, key, catalog):
    call = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    upstream.enqueue(Scenario(function_call=call, cut_after=2))
    r = chat(gw, key, request_id := rid(), stream=True,
             functions=[{"name": "get_weather", "parameters": {"type": "object"}}])
    events = sse_data(r.text)
    relayed = [(c.get("delta") or {}).get("function_call") for e in events if isinstance(e, dict)
               for c in e.get("choices") or ()]
    relayed = [fc for fc in relayed if fc]
    assert [fc.get("name") for fc in relayed] == ["get_weather", None, None], relayed
    assert_error_tail(events)
    # the name and two argument fragments: 3 fragments, 11 + 6 + 6 bytes -> max(3, ceil(23/4)) = 6
    pieces = ["get_weather"] + [fc["arguments"] for fc in relayed[1:]]
    assert pieces_estimate(pieces) == 6
    prompt = quarter(len(b"user" + b"Tell me a story" + b"get_weather" + b"object")) + 4 + 3
    settled(gw, key, request_id, expected_micros(catalog[MODEL], prompt, 6), "upstream_cut", 502, (prompt, 6))


def test_legacy_function_call_answer_is_completed(gw, upstream, key, catalog):
    upstream.enqueue(Scenario(function_call={"name": "f", "arguments": "{}"}, prompt_tokens=20, completion_tokens=4))
    r = chat(gw, key, request_id := rid())
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["function_call"] == {"name": "f", "arguments": "{}"}
    settled(gw, key, request_id, expected_micros(catalog[MODEL], 20, 4), "completed", 200)


# ---------------------------------------------------------------- 12. never a 500
def nested(depth: int) -> bytes:
    """`depth` arrays inside each other around a number."""
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("path,head", [
    ("/v1/chat/completions", (b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text",'
                              b'"text":"hi","x":')),
    ("/v1/responses", (b'{"model":"openai/gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_text",'
                       b'"text":"hi","x":')),
])
@pytest.mark.parametrize("depth", [252, 260, 990, 5000])
def test_deeply_nested_content_is_400(gw, upstream, key, path, head, depth):
    raw = head + nested(depth) + b"}]}]}"
    r = gw.post(path, key, content=raw, headers={"content-type": "application/json"})
    err = assert_error(r, 400, "invalid_request_error")
    assert "nested too deeply" in err["message"] and "100 levels" in err["message"], err
    assert upstream.requests == []
    cr = gw.credits(key)
    assert cr["held"] == 0 and cr["total_spent"] == 0


def test_nesting_limit_is_exactly_100_levels(gw, upstream, key):
    # the body object is level 1; 99 arrays inside it reach level 100
    base = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"user_data":'
    assert gw.post("/v1/chat/completions", key, content=base + nested(99) + b"}",
                   headers={"content-type": "application/json"}).status_code == 200
    r = gw.post("/v1/chat/completions", key, content=base + nested(100) + b"}",
                headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_request_error")
    assert len(upstream.chat_requests()) == 1


@pytest.mark.parametrize("disposition", [
    b"filename*=punycode''%5cx", b"filename*=utf-8''%ff%fe", b"filename*=rot13''abc", b"filename*=idna''%5c",
    b"filename*=utf-16''%00", b"filename*=''", b"filename*=x",
])
def test_odd_multipart_filenames_never_500(gw, upstream, key, catalog, disposition):
    """RFC 5987 values in charsets it does not allow, or that do not decode, are kept as sent."""
    wav = make_wav(1.0)
    body = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nopenai/whisper-1\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"; " + disposition +
            b"\r\nContent-Type: audio/wav\r\n\r\n" + wav + b"\r\n--b--\r\n")
    r = gw.post("/v1/audio/transcriptions", key, content=body,
                headers={"content-type": "multipart/form-data; boundary=b", "x-request-id": (request_id := rid())})
    assert r.status_code == 200, r.text
    settled(gw, key, request_id, transcription_micros(catalog["openai/whisper-1"], 1), "completed", 200)


def test_malformed_embeddings_answer_is_502_billed_by_its_reported_usage(gw, upstream, key, catalog):
    entry = {**catalog[EMBED], "output_cost_per_1m": 0}
    # `data` not an array, with valid usage: its reported input is charged
    upstream.enqueue(Scenario(mangle=lambda p: {**p, "data": {"0": p["data"][0]}}, prompt_tokens=4))
    r = gw.post("/v1/embeddings", key, json={"model": EMBED, "input": "hi"}, headers={"x-request-id": (a := rid())})
    err = assert_error(r, 502, "upstream_error")
    assert "'data' is not an array" in err["message"]
    charged = expected_micros(entry, 4, 0)
    assert charged > 0
    settled(gw, key, a, charged, "malformed_response", 502, (4, 0))
    # vectors that are not numbers (asked as base64, answered as floats), no usage: nothing
    for vector in (["a", None], [1e39], [True]):
        upstream.enqueue(Scenario(mangle=lambda p, v=vector: {**p, "data": [{**p["data"][0], "embedding": v}]},
                                  omit_usage=True))
        r = gw.post("/v1/embeddings", key, json={"model": EMBED, "input": "hi", "encoding_format": "base64"},
                    headers={"x-request-id": (b := rid())})
        assert_error(r, 502, "upstream_error")
        settled(gw, key, b, 0, "malformed_response", 502, spent=charged)
