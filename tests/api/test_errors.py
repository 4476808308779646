"""Every bad input gets the reference's error shape {"error": {"message", "type", "code" == status}}
with the status and type docs/errors.md gives, and never a 500; nothing bad is forwarded upstream."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODEL = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello"}]
UNPRICED = "openai/unpriced-x"


# ---------------------------------------------------------------- helpers
def assert_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    """The reference's shape, exactly: one "error" object with message, type, code (+ optional param)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    doc = r.json()
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    err = doc["error"]
    assert isinstance(err, dict), doc
    assert {"message", "type", "code"} <= set(err) <= {"message", "type", "code", "param"}, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["code"] == status and type(err["code"]) is int, err
    if type_ is not None:
        assert err["type"] == type_, err
    return err


def bearer(key: dict | str) -> dict:
    return {"Authorization": f"Bearer {key['key'] if isinstance(key, dict) else key}"}


def chat(gw, key, payload=None, *, content: bytes | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> httpx.Response:
    h = {**(bearer(key) if key is not None else {}), **(headers or {})}
    if content is not None:
        h.setdefault("content-type", "application/json")
        return httpx.post(gw.v1 + "/chat/completions", content=content, headers=h, timeout=timeout)
    return httpx.post(gw.v1 + "/chat/completions", json=payload, headers=h, timeout=timeout)


def new_key(gw, credits: str | None = "100", limit: str | None = None) -> dict:
    return gw.create_key(credits=credits, limit=limit, email=f"err-{uuid.uuid4().hex[:10]}@example.com")


@pytest.fixture(scope="module")
def ekey(gateway):
    return new_key(gateway, credits="100")


# ---------------------------------------------------------------- routes and methods
@pytest.mark.parametrize("method,path", [("GET", "/v1/nope"), ("POST", "/v1/chat/completion"), ("GET", "/nothing"),
                                         ("DELETE", "/api/nothing"), ("POST", "/v2/chat/completions")])
def test_unknown_route_is_404(gateway, ekey, method, path):
    r = httpx.request(method, gateway.base_url + path, headers=bearer(ekey), timeout=10)
    assert_error(r, 404, "not_found_error")


@pytest.mark.parametrize("method,path,allowed", [("GET", "/v1/chat/completions", "POST"),
                                                ("PUT", "/v1/chat/completions", "POST"),
                                                ("POST", "/v1/credits", "GET"),
                                                ("DELETE", "/api/models", "GET"),
                                                ("POST", "/health", "GET")])
def test_wrong_method_is_405_with_allow(gateway, ekey, method, path, allowed):
    r = httpx.request(method, gateway.base_url + path, headers=bearer(ekey), timeout=10)
    assert_error(r, 405)
    assert allowed in [m.strip() for m in r.headers["allow"].split(",")]


# ---------------------------------------------------------------- bodies
@pytest.mark.parametrize("raw", [b'{"model": "openai/gpt-4o-mini", "messages": [', b"{'model': 1}",
                                 b"not json", b"", b"\xff\xfe\x00", b'{"model": "x"} trailing', b"NaN"],
                         ids=["truncated", "single-quotes", "text", "empty", "binary", "trailing", "nan"])
def test_malformed_json_is_400(gateway, upstream, ekey, raw):
    assert_error(chat(gateway, ekey, content=raw), 400, "invalid_request_error")
    assert upstream.chat_requests() == []


@pytest.mark.parametrize("value", [[1, 2], "a string", 42, None, True, [{"model": MODEL, "messages": HELLO}]],
                         ids=["list", "string", "number", "null", "bool", "list-of-request"])
def test_json_that_is_not_an_object_is_400(gateway, upstream, ekey, value):
    assert_error(chat(gateway, ekey, content=json.dumps(value).encode()), 400, "invalid_request_error")
    assert upstream.chat_requests() == []


@pytest.mark.parametrize("payload,field", [
    ({"messages": HELLO}, "model"),
    ({"model": MODEL}, "messages"),
    ({}, "model"),
    ({"model": MODEL, "messages": "hi"}, "messages"),
    ({"model": MODEL, "messages": {"role": "user", "content": "hi"}}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": ["hi"]}, "messages"),
    ({"model": MODEL, "messages": [{"content": "hi"}]}, "role"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "content"),
    ({"model": 5, "messages": HELLO}, "model"),
    ({"model": "", "messages": HELLO}, "model"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": -5}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": 10.5}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": MODEL, "messages": HELLO, "stream": 1}, "stream"),
    ({"model": MODEL, "messages": HELLO, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": HELLO, "n": 0}, "n"),
    ({"model": MODEL, "messages": HELLO, "n": "two"}, "n"),
    ({"model": MODEL, "messages": HELLO, "stream_options": "usage"}, "stream_options"),
    ({"model": MODEL, "messages": HELLO, "tools": {"type": "function"}}, "tools"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_missing_or_wrongly_typed_fields_are_400_naming_the_field(gateway, upstream, ekey, payload, field):
    err = assert_error(chat(gateway, ekey, payload), 400, "invalid_request_error")
    assert field in err["message"] or field in (err.get("param") or ""), err
    assert upstream.chat_requests() == []


def test_unknown_model_is_404(gateway, upstream, ekey):
    err = assert_error(chat(gateway, ekey, {"model": "openai/gpt-nonexistent-9", "messages": HELLO}), 404,
                       "not_found_error")
    assert "openai/gpt-nonexistent-9" in err["message"]
    assert_error(chat(gateway, ekey, {"model": "no-such-model", "messages": HELLO}), 404, "not_found_error")
    assert upstream.chat_requests() == []


def test_embeddings_model_on_chat_is_400(gateway, upstream, ekey):
    r = chat(gateway, ekey, {"model": "openai/text-embedding-3-small", "messages": HELLO})
    err = assert_error(r, 400, "invalid_request_error")
    assert "text-embedding-3-small" in err["message"]
    assert upstream.chat_requests() == []


# ---------------------------------------------------------------- body limit and TOML config
@pytest.fixture(scope="module")
def configured_gateway(serve_gateway, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "aicredits.toml"
    cfg.write_text(f'''
[[models]]
id = "{UNPRICED}"
name = "Unpriced X"
provider = "openai"
upstream_id = "unpriced-x"
endpoint = "chat"
context_window = 8192
''')
    return serve_gateway(env={"AICREDITS_MAX_BODY_BYTES": "2048", "AICREDITS_CONFIG": str(cfg)})


def test_body_over_the_limit_is_413_and_nothing_is_forwarded(configured_gateway, upstream):
    gw = configured_gateway
    key = new_key(gw)
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 4000}]}
    # with a Content-Length
    assert_error(chat(gw, key, big), 413, "request_too_large")
    # chunked, no Content-Length: the limit holds while reading
    raw = json.dumps(big).encode()

    def pieces():
        for i in range(0, len(raw), 500):
            yield raw[i:i + 500]
    r = httpx.post(gw.v1 + "/chat/completions", content=pieces(), timeout=10,
                   headers={**bearer(key), "content-type": "application/json"})
    assert_error(r, 413, "request_too_large")
    assert upstream.requests == []
    # just under the limit is served
    ok = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 1000}]}
    assert chat(gw, key, ok).status_code == 200
    assert len(upstream.chat_requests()) == 1
    cr = gw.credits(key["key"])
    assert cr["held"] == 0


def test_unpriced_model_from_config_is_refused_with_400_naming_it(configured_gateway, upstream):
    gw = configured_gateway
    key = new_key(gw)
    listed = gw.catalog()
    assert UNPRICED in listed            # listed, never served
    for stream in (False, True):
        err = assert_error(chat(gw, key, {"model": UNPRICED, "messages": HELLO, "stream": stream}), 400,
                           "invalid_request_error")
        assert UNPRICED in err["message"], err
    assert upstream.requests == []
    cr = gw.credits(key["key"])
    assert cr["total_spent"] == 0 and cr["held"] == 0
    deadline = time.time() + 2
    while UNPRICED not in gw.log() and time.time() < deadline:
        time.sleep(0.05)
    assert UNPRICED in gw.log(), "the refusal of an unpriced model is not logged"


# ---------------------------------------------------------------- authentication
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer sk-abc def"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "sk-" + "a" * 64},
    {"Authorization": "Bearer sk-abc"},
    {"Authorization": "Bearer sk-" + "A" * 64},
    {"Authorization": "Bearer sk-" + "g" * 64},
    {"Authorization": "Bearer sk-" + "a" * 63},
    {"Authorization": "Bearer sk-" + "a" * 65},
    {"Authorization": "Bearer " + "a" * 64},
    {"Authorization": "Bearer sk-" + secrets.token_hex(32)},      # well formed, unknown
], ids=["none", "empty", "bearer-only", "spaces", "basic", "no-scheme", "short", "upper", "non-hex",
        "63", "65", "no-prefix", "unknown"])
def test_missing_malformed_or_unknown_key_is_401(gateway, upstream, headers):
    r = chat(gateway, None, {"model": MODEL, "messages": HELLO}, headers=headers)
    assert_error(r, 401, "authentication_error")
    r = httpx.get(gateway.v1 + "/credits", headers=headers, timeout=10)
    assert_error(r, 401, "authentication_error")
    assert upstream.requests == []


def test_revoked_key_is_refused_within_a_second(gateway, upstream):
    key = new_key(gateway)
    assert chat(gateway, key, {"model": MODEL, "messages": HELLO}).status_code == 200   # warm every cache
    assert httpx.get(gateway.v1 + "/credits", headers=bearer(key), timeout=10).status_code == 200
    assert gateway.admin(lambda a: a.revoke_key(key["id"]))   # what `aicredits keys revoke` does
    revoked_at = time.monotonic()
    while True:
        r = chat(gateway, key, {"model": MODEL, "messages": HELLO})
        if r.status_code != 200 or time.monotonic() - revoked_at > 3:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - revoked_at
    assert_error(r, 401, "authentication_error")
    assert elapsed <= 1.5, f"the revoked key was still served {elapsed:.2f} s after `keys revoke`"
    r = httpx.get(gateway.v1 + "/credits", headers=bearer(key), timeout=10)
    assert_error(r, 401, "authentication_error")
    assert_error(chat(gateway, key, {"model": MODEL, "messages": HELLO, "stream": True}), 401,
                 "authentication_error")


# ---------------------------------------------------------------- 402
def _fit(message: str, requested: int) -> int:
    """The max_tokens the 402 message says would fit."""
    numbers = [int(n) for n in re.findall(r"max_tokens\D{0,12}?(\d+)", message)]
    fits = [n for n in numbers if n != requested]
    assert fits, f"the 402 does not name a max_tokens that would fit: {message!r}"
    return fits[0]


def test_402_names_the_max_tokens_that_would_fit(gateway, upstream):
    key = new_key(gateway, credits="0.01")
    err = assert_error(chat(gateway, key, {"model": MODEL, "messages": HELLO, "max_tokens": 100000}), 402,
                       "insufficient_credits")
    fit = _fit(err["message"], 100000)
    assert 1 <= fit < 100000
    assert upstream.chat_requests() == []
    # the number is exact: one more is refused, that many is served
    err = assert_error(chat(gateway, key, {"model": MODEL, "messages": HELLO, "max_tokens": fit + 1}), 402,
                       "insufficient_credits")
    assert _fit(err["message"], fit + 1) == fit
    r = chat(gateway, key, {"model": MODEL, "messages": HELLO, "max_tokens": fit})
    assert r.status_code == 200, r.text
    assert upstream.chat_requests()[-1].body.get("max_tokens", upstream.chat_requests()[-1].body.get(
        "max_completion_tokens")) == fit
    cr = gateway.credits(key["key"])
    assert cr["held"] == 0 and cr["balance"] >= 0


def test_402_names_credits_when_not_even_one_token_fits(gateway, upstream):
    key = new_key(gateway, credits="0")
    for payload in ({"model": MODEL, "messages": HELLO},
                    {"model": MODEL, "messages": HELLO, "max_tokens": 10},
                    {"model": MODEL, "messages": HELLO, "stream": True}):
        err = assert_error(chat(gateway, key, payload), 402, "insufficient_credits")
        msg = err["message"]
        assert re.search(r"\d+(\.\d+)? INR", msg), msg        # how many credits would do
        assert "credit" in msg.lower() or "add" in msg.lower(), msg
        assert "would fit" not in msg, msg
    assert upstream.chat_requests() == []


def test_402_names_the_key_limit_when_it_binds(gateway, upstream):
    # the wallet has 100 INR; the key may spend 0.001 INR: the limit is what refuses
    key = new_key(gateway, credits="100", limit="0.001")
    err = assert_error(chat(gateway, key, {"model": MODEL, "messages": HELLO, "max_tokens": 100}), 402,
                       "insufficient_credits")
    assert "limit" in err["message"].lower(), err
    assert 1 <= _fit(err["message"], 100) < 100
    # a limit below even the prompt: refused without max_tokens too, naming the limit
    tiny = new_key(gateway, credits="100", limit="0.000100")
    err = assert_error(chat(gateway, tiny, {"model": MODEL, "messages": HELLO}), 402, "insufficient_credits")
    assert "limit" in err["message"].lower(), err
    assert upstream.chat_requests() == []


# ---------------------------------------------------------------- random bodies
_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
         | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON = st.recursive(
    _leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "bogus"]) | JSON},
    optional={"content": st.text(max_size=20) | JSON, "name": JSON, "tool_calls": JSON,
              "tool_call_id": JSON})
OPTIONAL = ("stream", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "tools",
            "tool_choice", "stream_options", "response_format", "stop", "cache", "no_cache", "models", "user",
            "seed", "logit_bias", "functions")
CHAT_BODY = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "gpt-4o-mini", "openai/text-embedding-3-small", "nope/x", ""]) | JSON,
     "messages": st.lists(MESSAGE, max_size=3) | JSON},
    optional={k: JSON for k in OPTIONAL})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=JSON | CHAT_BODY)
def test_random_bodies_never_500_and_errors_keep_the_shape(gateway, ekey, value):
    raw = json.dumps(value).encode()
    r = httpx.post(gateway.v1 + "/chat/completions", content=raw, timeout=15,
                   headers={**bearer(ekey), "content-type": "application/json"})
    assert r.status_code < 500, (value, r.status_code, r.text)
    if r.status_code >= 400:
        assert_error(r, r.status_code)
