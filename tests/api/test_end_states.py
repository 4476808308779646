"""The end-state table of docs/billing.md ("How each way a call can end is billed"), one test per row: what the client sees and the exact charge.

After every call: the wallet's `total_spent` (micro-INR), the usage row written for the call
(as `aicredits usage --json` shows it: end_state, cost, tokens), `held` back to 0, and the ledger
verifying (read in this process: a CLI process start costs seconds; tests/cli/ tests the CLI).
Streams are read as raw SSE with httpx (the SDK raises on error events). Tests share one account per
gateway: charges are checked as the change in `total_spent`, and
each call's usage row is found by the `x-request-id` the test sends.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario, split_content

MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Tell me a story"}]
STORY = "alpha beta gamma delta epsilon zeta eta theta"


# ---------------------------------------------------------------- helpers
def new_key(gw, credits: str = "100") -> dict:
    email = f"end-{uuid.uuid4().hex[:10]}@example.com"
    k = gw.create_key(credits=credits, email=email)
    k["email"] = email
    return k


def fresh(gw, shared: dict) -> dict:
    """A shared account's key with the wallet's figures before this test."""
    cr = gw.credits(shared["key"])
    assert cr["held"] == 0, cr
    return {**shared, "spent0": micros(cr["total_spent"]), "added0": micros(cr["total_added"])}


def new_rid() -> str:
    return "end-" + uuid.uuid4().hex


def headers(key: dict, rid: str) -> dict:
    """The key, and the call's request id (to find its usage row)."""
    return {"Authorization": f"Bearer {key['key']}", "x-request-id": rid}


def body(**extra) -> dict:
    return {"model": MODEL, "messages": MESSAGES, **extra}


def prompt_estimate(messages: list[dict]) -> int:
    """The documented estimator: ceil(text bytes / 4) + 4 per message + 3 (text = the string values)."""
    n = 0
    for m in messages:
        for v in m.values():
            if isinstance(v, str):
                n += len(v.encode("utf-8"))
    return -(-n // 4) + 4 * len(messages) + 3


def output_estimate(pieces: list[str]) -> int:
    """The documented estimator: max(fragments, ceil(utf-8 bytes / 4))."""
    n = sum(len(p.encode("utf-8")) for p in pieces)
    return max(len(pieces), -(-n // 4))


def micros(inr: float) -> int:
    return round(inr * 1_000_000)


def post(gw, key, payload: dict, rid: str, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", json=payload, headers=headers(key, rid), timeout=timeout)


def stream_events(gw, key, payload: dict, rid: str, timeout: float = 10.0) -> tuple[httpx.Response, list]:
    """POST a stream; return (response, [parsed data payloads, "[DONE]" kept as the string])."""
    events: list = []
    with httpx.Client(timeout=timeout) as c, \
            c.stream("POST", gw.v1 + "/chat/completions", json=payload, headers=headers(key, rid)) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        for line in r.iter_lines():
            if line.startswith("data:"):
                data = line[5:].strip()
                events.append(data if data == "[DONE]" else json.loads(data))
    return r, events


def content_of(events: list) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, dict) and "error" not in e:
            for ch in e.get("choices") or ():
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    out.append(piece)
    return out


def assert_error_shape(err: dict, status: int, type_: str) -> None:
    assert set(err) >= {"message", "type", "code"}, err
    assert set(err) <= {"message", "type", "code", "param"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == type_, err
    assert err["code"] == status, err


def assert_cut_tail(events: list, type_: str = "upstream_error", upstream_finished: bool = False) -> dict:
    """The stream ends with ONE error event (error + finish_reason "error"), then [DONE]."""
    assert events, "no SSE events"
    assert events[-1] == "[DONE]", events[-3:]
    assert events.count("[DONE]") == 1
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1, errors
    tail = events[-2]
    assert tail is errors[0], events[-3:]
    assert_error_shape(tail["error"], 504 if type_ == "upstream_timeout" else 502, type_)
    assert tail["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    if not upstream_finished:   # the gateway never invents a clean finish the upstream did not send
        assert not any(isinstance(e, dict) and any(c.get("finish_reason") not in (None, "error")
                                                   for c in e.get("choices") or ()) for e in events)
    return tail


def usage_rows(gw, key, rids, wait: float = 3.0) -> dict[str, dict]:
    """The usage rows (as `aicredits usage --json --email` prints them) of these request ids, by request id."""
    deadline = time.time() + wait
    while True:
        rows = gw.usage(key["email"])
        found = [r for r in rows if r["request_id"] in rids]
        if len(found) >= len(rids) or time.time() > deadline:
            break
        time.sleep(0.1)
    by_rid: dict[str, dict] = {}
    for r in found:
        assert r["request_id"] not in by_rid, f"two usage rows for request {r['request_id']}"
        by_rid[r["request_id"]] = r
    missing = set(rids) - set(by_rid)
    assert not missing, f"no usage row for request(s) {missing}"
    return by_rid


def assert_settled(gw, key, calls: dict[str, tuple], wait: float = 3.0) -> dict[str, dict]:
    """calls: request id -> (charge micro-INR, end_state, prompt_tokens | None, completion_tokens | None).
    Exact charges on the wallet and on each usage row; holds released; ledger verifies."""
    charge = sum(c[0] for c in calls.values())
    deadline = time.time() + wait
    while True:
        cr = gw.credits(key["key"])
        done = cr["held"] == 0 and micros(cr["total_spent"]) - key["spent0"] == charge
        if done or time.time() > deadline:
            break
        time.sleep(0.05)
    assert cr["held"] == 0, cr
    assert cr["key"]["held"] == 0, cr
    assert micros(cr["total_spent"]) - key["spent0"] == charge, (cr, key["spent0"], charge)
    assert micros(cr["total_added"]) == key["added0"]
    assert micros(cr["balance"]) == key["added0"] - key["spent0"] - charge
    assert gw.verify() == []
    rows = usage_rows(gw, key, set(calls), wait)
    for rid, (want, end_state, prompt, completion) in calls.items():
        row = rows[rid]
        assert row["end_state"] == end_state, row
        assert micros(row["cost"]) == want, (row, want)
        if prompt is not None:
            assert row["prompt_tokens"] == prompt, row
        if completion is not None:
            assert row["completion_tokens"] == completion, row
    return rows


@pytest.fixture
def entry(gateway):
    return gateway.catalog()[MODEL]


@pytest.fixture(scope="module")
def shared_key(gateway):
    return new_key(gateway, credits="1000")


@pytest.fixture
def ukey(gateway, shared_key):
    return fresh(gateway, shared_key)


# ---------------------------------------------------------------- completed
def test_completed_non_streaming_charges_actual_usage(gateway, upstream, ukey, entry):
    upstream.enqueue(Scenario(content="Once upon a time.", prompt_tokens=1234, completion_tokens=567,
                              cached_tokens=200))
    rid = new_rid()
    r = post(gateway, ukey, body(), rid)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Once upon a time."
    assert r.headers["x-request-id"] == rid
    want = expected_micros(entry, 1234, 567, cached=200)
    assert r.headers["x-aicredits-cost"] == f"{want // 10**6}.{want % 10**6:06d}"
    rows = assert_settled(gateway, ukey, {rid: (want, "completed", 1234, 567)})
    assert rows[rid]["cache_read_tokens"] == 200
    assert rows[rid]["status"] == 200


def test_completed_stream_charges_actual_usage(gateway, upstream, ukey, entry):
    """With and without include_usage: the upstream is always asked for usage, so the charge is exact;
    the usage chunk (with `cost`) reaches the client only when it asked; the stream ends with [DONE]."""
    want = expected_micros(entry, 321, 45)
    calls = {}
    for include_usage in (True, False):
        upstream.enqueue(Scenario(content=STORY, prompt_tokens=321, completion_tokens=45))
        rid = new_rid()
        payload = body(stream=True, stream_options={"include_usage": include_usage})
        r, events = stream_events(gateway, ukey, payload, rid)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "".join(content_of(events)) == STORY
        assert not any(isinstance(e, dict) and "error" in e for e in events)
        finishes = [c.get("finish_reason") for e in events if isinstance(e, dict)
                    for c in e.get("choices") or ()]
        assert finishes[-1] == "stop"
        usage_chunks = [e for e in events if isinstance(e, dict) and e.get("usage")]
        if include_usage:
            assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
            u = usage_chunks[0]["usage"]
            assert u["prompt_tokens"] == 321 and u["completion_tokens"] == 45
            assert micros(u["cost"]) == want
        else:
            assert usage_chunks == []
        assert upstream.chat_requests()[-1].body["stream_options"]["include_usage"] is True
        calls[rid] = (want, "completed", 321, 45)
        assert events and events[-1] == "[DONE]", \
            f"a completed stream must end with data: [DONE]; it ended with {events[-2:]}"
    assert_settled(gateway, ukey, calls)


# ---------------------------------------------------------------- upstream error before any output
UPSTREAM_ERRORS = [
    # (scenario kwargs, client status, client type)
    ({"status": 500, "error_type": "server_error", "error_message": "The server had an error."},
     502, "upstream_error"),
    ({"status": 429, "error_type": "rate_limit_exceeded", "error_message": "Rate limit reached for requests.",
      "headers": {"retry-after": "7"}}, 429, "rate_limit_error"),
    ({"status": 400, "error_type": "invalid_request_error",
      "error_message": "Invalid value for 'temperature': must be at most 2."}, 400, "invalid_request_error"),
    ({"status": 401, "error_type": "invalid_request_error",
      "error_message": "Incorrect API key provided: {KEY}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys."}, 502, "upstream_error"),
]


@pytest.mark.parametrize("case", UPSTREAM_ERRORS, ids=["500", "429", "400", "401"])
def test_upstream_error_before_output_charges_nothing(gateway, upstream, ukey, case):
    """Non-streaming and stream=True alike: an error JSON body (not SSE) in our shape; nothing charged."""
    kwargs, status, type_ = case
    kwargs = dict(kwargs, error_message=kwargs["error_message"].replace("{KEY}", upstream.api_key))
    calls = {}
    for stream in (False, True):
        upstream.enqueue(Scenario(**kwargs))
        rid = new_rid()
        payload = body(stream=True, stream_options={"include_usage": True}) if stream else body()
        r = post(gateway, ukey, payload, rid)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json"), r.headers
        err = r.json()["error"]
        assert_error_shape(err, status, type_)
        if status == 429:
            assert r.headers["retry-after"] == "7"
        if kwargs["status"] == 400:
            assert kwargs["error_message"] in err["message"]
        if kwargs["status"] == 401:
            assert "Incorrect API key" not in err["message"]
        assert upstream.api_key not in r.text
        assert "sk-fake" not in r.text
        calls[rid] = (0, "upstream_error", None, 0)
    assert len(upstream.chat_requests()) == 2    # no retries against a provider that refused
    assert_settled(gateway, ukey, calls)


# ---------------------------------------------------------------- cut / error mid-stream
def test_upstream_cut_mid_stream_charges_prompt_and_delivered(gateway, upstream, ukey, entry):
    upstream.enqueue(Scenario(content=STORY, prompt_tokens=500, completion_tokens=300, cut_after=3))
    rid = new_rid()
    r, events = stream_events(gateway, ukey, body(stream=True), rid)
    assert r.status_code == 200
    delivered = split_content(STORY)[:3]
    assert content_of(events) == delivered
    assert_cut_tail(events)
    p, c = prompt_estimate(MESSAGES), output_estimate(delivered)
    # "user" + "Tell me a story" = 19 bytes, 1 message; "alpha beta gamma " = 17 bytes in 3 deltas
    assert (p, c) == (12, 5)
    assert_settled(gateway, ukey, {rid: (expected_micros(entry, p, c), "upstream_cut", p, c)})


def test_upstream_error_event_mid_stream_charges_prompt_and_delivered(gateway, upstream, ukey, entry):
    upstream.enqueue(Scenario(content=STORY, error_after=2, error_type="server_error",
                              error_message="The model crashed mid-answer."))
    rid = new_rid()
    r, events = stream_events(gateway, ukey, body(stream=True, stream_options={"include_usage": True}), rid)
    assert r.status_code == 200
    delivered = split_content(STORY)[:2]
    assert content_of(events) == delivered
    tail = assert_cut_tail(events)
    assert "crashed" in tail["error"]["message"]
    p, c = prompt_estimate(MESSAGES), output_estimate(delivered)
    assert_settled(gateway, ukey, {rid: (expected_micros(entry, p, c), "upstream_cut", p, c)})


def test_upstream_ends_without_done_counts_as_cut(gateway, upstream, ukey, entry):
    upstream.enqueue(Scenario(content=STORY, prompt_tokens=77, completion_tokens=11, omit_done=True))
    rid = new_rid()
    r, events = stream_events(gateway, ukey, body(stream=True, stream_options={"include_usage": True}), rid)
    assert r.status_code == 200
    assert "".join(content_of(events)) == STORY
    assert_cut_tail(events, upstream_finished=True)
    want = expected_micros(entry, 77, 11)   # the usage the upstream did send
    assert_settled(gateway, ukey, {rid: (want, "upstream_cut", 77, 11)})


# ---------------------------------------------------------------- client disconnect
def test_client_disconnect_cancels_upstream_and_charges_delivered(gateway, upstream, ukey, entry):
    upstream.enqueue(Scenario(content=STORY, chunk_delay=0.3))
    rid = new_rid()
    seen = []
    with httpx.Client(timeout=10) as c, \
            c.stream("POST", gateway.v1 + "/chat/completions", json=body(stream=True),
                     headers=headers(ukey, rid)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if len(seen) == 2:
                    break      # leaving the block closes the connection mid-stream
    closed = time.monotonic()
    assert upstream.wait_disconnect(timeout=2.0), "the upstream call was not cancelled"
    assert time.monotonic() - closed < 2.0
    delivered = content_of(seen)
    assert delivered == split_content(STORY)[:1]
    p, c = prompt_estimate(MESSAGES), output_estimate(delivered)
    want = expected_micros(entry, p, c)
    assert want > 0
    rows = assert_settled(gateway, ukey, {rid: (want, "client_disconnect", p, c)})
    assert rows[rid]["status"] == 499
    assert upstream.in_flight == 0


# ---------------------------------------------------------------- zero output with an error
def test_zero_output_error_charges_nothing(gateway, upstream, ukey):
    """cut_after=0 (connection lost after the role chunk) and error_after=0 (an error event first)."""
    calls = {}
    for how in ({"cut_after": 0}, {"error_after": 0}):
        upstream.enqueue(Scenario(content=STORY, **how))
        rid = new_rid()
        payload = body(stream=True, stream_options={"include_usage": True})
        r, events = stream_events(gateway, ukey, payload, rid)
        assert r.status_code == 200
        assert content_of(events) == []
        assert_cut_tail(events)
        calls[rid] = (0, "zero_output_error", None, 0)
    assert_settled(gateway, ukey, calls)


# ---------------------------------------------------------------- timeouts
@pytest.fixture(scope="module")
def slow_gateway(serve_gateway):
    return serve_gateway(env={"AICREDITS_UPSTREAM_TIMEOUT": "0.5", "AICREDITS_STREAM_IDLE_TIMEOUT": "0.5"})


@pytest.fixture(scope="module")
def slow_shared_key(slow_gateway):
    return new_key(slow_gateway, credits="1000")


@pytest.fixture
def slow_key(slow_gateway, slow_shared_key):
    return fresh(slow_gateway, slow_shared_key)


def test_first_byte_timeout_is_504_and_charges_nothing(slow_gateway, upstream, slow_key):
    calls = {}
    for stream in (False, True):
        upstream.enqueue(Scenario(first_byte_delay=2.0))
        rid = new_rid()
        r = post(slow_gateway, slow_key, body(stream=True) if stream else body(), rid)
        assert r.status_code == 504, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert_error_shape(r.json()["error"], 504, "upstream_timeout")
        calls[rid] = (0, "upstream_error", None, 0)
    assert_settled(slow_gateway, slow_key, calls)


def test_stream_idle_timeout_cuts_with_upstream_timeout_event(slow_gateway, upstream, slow_key):
    upstream.enqueue(Scenario(content=STORY, chunk_delay=2.0))
    rid = new_rid()
    r, events = stream_events(slow_gateway, slow_key, body(stream=True), rid)
    assert r.status_code == 200
    assert content_of(events) == []    # only the role chunk arrives before the 2 s gap
    tail = assert_cut_tail(events, "upstream_timeout")
    assert tail["error"]["code"] == 504
    # nothing but the role chunk was delivered: a zero-output row, charged nothing
    assert_settled(slow_gateway, slow_key, {rid: (0, "zero_output_error", None, 0)})
