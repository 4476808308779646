"""The response caches' pure rules: the normalised key, what bypasses, the policy and its
overrides, the near-miss guard, what may be stored, the SSE replay and a hit's charge."""

from __future__ import annotations

from fractions import Fraction

import orjson
import pytest

from aicredits.domain import cache_entry
from aicredits.domain.cache_entry import (
    CacheEntry,
    StreamAssembler,
    hit_bytes,
    hit_charge,
    hit_response,
    sse_chunks,
    storable,
)
from aicredits.domain.cache_guard import differs, language, negations, numbers
from aicredits.domain.cache_rules import (
    CachePolicy,
    CacheRule,
    Effective,
    bypass_reason,
    context_key,
    exact_key,
    last_user_text,
    load_policy,
)
from aicredits.domain.money import micros_to_inr

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "What is the capital of France?"}]}
ON = Effective(True, True, 0.93, 60, "a:1")


def key(body: dict, scope: str = "a:1") -> str:
    return exact_key(body, "openai/gpt-4o-mini", scope)


def test_the_exact_key_ignores_what_never_changes_the_answer():
    same = [
        {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u1", "no_cache": False},
        {**BODY, "temperature": 1, "top_p": 1, "n": 1, "presence_penalty": 0, "seed": None},
        {**BODY, "messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                              {"role": "user", "content": "  What is the capital of France?\n", "name": None}]},
        {**BODY, "model": "openai/gpt-4o-mini"},
    ]
    assert {key(b) for b in same} == {key(BODY)}
    assert key({**BODY, "max_tokens": 50}) == key({**BODY, "max_completion_tokens": 50})


@pytest.mark.parametrize("change", [
    {"seed": 7}, {"temperature": 0.2}, {"top_p": 0.5}, {"max_tokens": 5}, {"stop": ["."]},
    {"response_format": {"type": "json_object"}}, {"logit_bias": {"50256": -100}}, {"reasoning_effort": "low"},
    {"messages": [BODY["messages"][1]]},
    {"messages": [BODY["messages"][0], {"role": "user", "content": "What is the capital of Spain?"}]},
])
def test_every_parameter_that_changes_the_answer_changes_the_key(change):
    assert key({**BODY, **change}) != key(BODY)


def test_scopes_and_models_never_share_a_key():
    assert key(BODY, "a:1") != key(BODY, "a:2") != key(BODY, "shared")
    assert exact_key(BODY, "openai/gpt-4o", "a:1") != key(BODY)


def test_the_context_key_leaves_out_the_last_turn_only():
    para = {**BODY, "messages": [BODY["messages"][0], {"role": "user", "content": "Capital of France?"}]}
    assert context_key(para, "m", "a:1") == context_key(BODY, "m", "a:1")
    other_system = {**para, "messages": [{"role": "system", "content": "Be long."}, para["messages"][1]]}
    assert context_key(other_system, "m", "a:1") != context_key(BODY, "m", "a:1")
    assert context_key({**BODY, "temperature": 0}, "m", "a:1") != context_key(BODY, "m", "a:1")
    assert last_user_text(BODY) == "What is the capital of France?"
    assert last_user_text({**BODY, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}) is None


@pytest.mark.parametrize("extra, reason", [
    ({"no_cache": True}, "no_cache"), ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"functions": [{"name": "f"}]}, "tools"), ({"web_search_options": {}}, "tools"),
    ({"temperature": 1.5}, "temperature"), ({"modalities": ["text", "audio"]}, "audio"),
    ({"messages": [{"role": "tool", "tool_call_id": "1", "content": "42"}]}, "tool_result"),
    ({}, None), ({"temperature": 1.0}, None), ({"n": 1}, None), ({"tools": []}, None),
])
def test_what_bypasses_the_cache(extra, reason):
    assert bypass_reason({**BODY, **extra}, ON, 1.0) == reason
    assert bypass_reason(BODY, Effective(False, False, 0.9, 60, "a:1"), 1.0) == "off"


def test_rules_per_key_over_model_over_global_and_the_scope():
    p = CachePolicy(exact=True, threshold=0.9, shared_models=frozenset({"m/shared"}),
                    models={"m/a": CacheRule(semantic=True, threshold=0.95)},
                    keys={"k1": CacheRule(threshold=0.99, scope="key"), "k2": CacheRule(scope="account")})
    e = p.resolve("m/a", 5, "k0")
    assert (e.exact, e.semantic, e.threshold, e.scope) == (True, True, 0.95, "a:5")
    assert p.resolve("m/a", 5, "k1").threshold == 0.99 and p.resolve("m/a", 5, "k1").scope == "k:k1"
    assert p.resolve("m/shared", 5, "k0").scope == "shared"
    assert p.resolve("m/shared", 5, "k2").scope == "a:5"
    assert not CachePolicy().enabled and CachePolicy(models={"x": CacheRule(exact=True)}).enabled


def test_loading_the_policy_from_the_environment_and_the_file():
    p = load_policy({"AICREDITS_CACHE_EXACT": "true", "AICREDITS_CACHE_HIT_PRICE": "0.25",
                     "AICREDITS_CACHE_SHARED_MODELS": "openai/gpt-4o-mini, openai/gpt-4o"},
                    {"threshold": 0.95, "exact": False, "models": {"openai/gpt-4o": {"ttl_seconds": 60}}})
    assert p.exact and p.threshold == 0.95 and p.hit_price == Fraction(1, 4)
    assert p.shared_models == {"openai/gpt-4o-mini", "openai/gpt-4o"}
    assert p.models["openai/gpt-4o"].ttl_seconds == 60
    for env, cfg in [({"AICREDITS_CACHE_THRESHOLD": "1.5"}, {}), ({"AICREDITS_CACHE_HIT_PRICE": "2"}, {}),
                     ({"AICREDITS_CACHE_EXACT": "maybe"}, {}), ({}, {"threshhold": 0.9}),
                     ({}, {"keys": {"k": {"scope": "world"}}}), ({}, {"shared_models": [1, 2]}),
                     ({}, {"shared_models": 5}), ({}, {"ttl_seconds": [60]})]:
        with pytest.raises(ValueError):
            load_policy(env, cfg)


@pytest.mark.parametrize("a, b, why", [
    ("What is 2 + 2?", "What is 2 + 3?", "number"),
    ("How many days are in two weeks?", "How many days are in three weeks?", "number"),
    ("३ हफ्तों में कितने दिन होते हैं?", "४ हफ्तों में कितने दिन होते हैं?", "number"),
    ("Which foods are safe for dogs?", "Which foods are not safe for dogs?", "negation"),
    ("क्या अंडा शाकाहारी है?", "क्या अंडा शाकाहारी नहीं है?", "negation"),
    ("Kya anda vegetarian hai?", "Kya anda vegetarian nahi hai?", "negation"),
    ("What is the capital of India?", "भारत की राजधानी क्या है?", "language"),
    ("How do I reset my password?", "Mera password reset kaise karu?", "language"),
    ("What does `x = x + 1` do?", "What does `x = x - 1` do?", "code"),
    ("How do I sort a list in Python?", "How do I sort a list in Java?", "target"),
    ("What is the boiling point of water?", "What is the boiling point of ethanol?", "swap"),
    ("What is the capital of France?", "What is the capital of Germany?", "swap"),
])
def test_the_guard_names_the_difference(a, b, why):
    assert differs(a, b, 0.95) == why


@pytest.mark.parametrize("a, b", [
    ("What is the capital of France?", "Tell me the capital city of France."),
    ("Who discovered penicillin?", "Who was the discoverer of penicillin?"),
    ("भारत की राजधानी क्या है?", "भारत की राजधानी कौन सी है?"),
    ("Mera order kahan hai?", "Mera order abhi kahan hai?"),
])
def test_the_guard_lets_paraphrases_through(a, b):
    assert differs(a, b, 0.95) is None


def test_the_guard_reads_words_of_each_script():
    assert negations("मेरा फोन चार्ज नहीं हो रहा है।") == 1
    assert numbers("How do I do two things?") == ["2"]          # "do" is not a number in English
    assert numbers("Do ande", "hi-latn") == ["2"]
    assert language("Kya anda vegetarian hai?") == "hi-latn" and language("Is an egg vegetarian?") == "latn"


def test_only_clean_whole_answers_are_stored():
    ok = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}
    assert storable(ok)
    for bad in ({**ok, "choices": [{**ok["choices"][0], "finish_reason": "length"}]},
                {**ok, "choices": [{**ok["choices"][0], "message": {"content": None, "refusal": "No."}}]},
                {**ok, "choices": [{**ok["choices"][0], "message": {"content": None, "tool_calls": [{}]}}]},
                {**ok, "choices": []}, {**ok, "error": {"message": "x"}}):
        assert not storable(bad)


def test_a_stream_is_put_back_together_and_replayed_well_formed():
    asm = StreamAssembler()
    for chunk in ({"id": "c1", "model": "m", "created": 5, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                  {"id": "c1", "choices": [{"index": 0, "delta": {"content": "one "}}]},
                  {"id": "c1", "choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": "stop"}]},
                  {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}):
        asm.observe(chunk)
    data = asm.completion()
    assert data["choices"][0]["message"]["content"] == "one two" and data["usage"]["completion_tokens"] == 2
    cut = StreamAssembler()
    cut.observe({"id": "c", "choices": [{"index": 0, "delta": {"content": "one"}}]})
    assert cut.completion() is None
    sse = sse_chunks({**data, "content": None, "id": "chatcmpl-x", "created": 9}, include_usage=True, piece=3)
    events = [e.removeprefix(b"data: ") for e in sse.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "one two"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 3
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert b"usage" not in sse_chunks({**data, "id": "x", "created": 1}, include_usage=False)


def _entry(content: str, **extra: object) -> CacheEntry:
    data = {"id": "chatcmpl-upstream", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}, **extra}
    return CacheEntry(key="k", scope="a:1", account_id=1, model="openai/gpt-4o-mini", response=orjson.dumps(data),
                      prompt_tokens=7, completion_tokens=3, charge=1234, created_at=0, expires_at=10**13)


@pytest.mark.parametrize("content", [
    "Paris.", 'quotes " and \\ and chatcmpl-x and "created": 5 and \u00e9 \u0939\u093f\u0902\u0926\u0940 \U0001f600',
    "x" * 700])   # more than one content event when streamed
@pytest.mark.parametrize("charged", [0, 123])
def test_a_hits_bytes_are_its_answer_encoded_with_this_calls_id_and_time(content, charged):
    """The template made once per entry and charge gives, per hit, exactly the bytes the answer
    encoded afresh would be: as JSON, and as an SSE stream with and without its usage event."""
    entry = _entry(content, system_fingerprint="fp_1")
    for n, (call_id, now) in enumerate((("a" * 32, 1_700_000_000), ("0123456789abcdef" * 2, 1_800_000_001))):
        data = hit_response(entry, call_id, now, micros_to_inr(charged))
        assert hit_bytes(entry, False, False, charged, call_id, now) == orjson.dumps(data)
        for include_usage in (False, True):
            assert hit_bytes(entry, True, include_usage, charged, call_id, now) == sse_chunks(data, include_usage)
        assert data["model"] == "openai/gpt-4o-mini" and data["id"] == "chatcmpl-" + call_id
        assert len(entry.rendered or {}) == 3   # made on the first hit, reused on the second
    assert orjson.loads(hit_bytes(entry, False, False, charged, "b" * 32, 5))["usage"]["cost"] == charged / 1e6


def test_an_answer_holding_a_mark_is_encoded_per_hit():
    """Were a stored answer to hold the process's mark as a whole JSON string (inside a string its
    quotes are escaped, so it is not found there), no template is made, and each hit is encoded
    afresh (so its bytes are still right)."""
    entry = _entry("says " + cache_entry._ID_TOKEN.decode(), system_fingerprint="chatcmpl-" + cache_entry._ID_MARK)
    assert hit_bytes(_entry("says " + cache_entry._ID_TOKEN.decode()), False, False, 0, "c" * 32, 99) == \
        orjson.dumps(hit_response(_entry("says " + cache_entry._ID_TOKEN.decode()), "c" * 32, 99, 0.0))
    data = hit_response(entry, "c" * 32, 99, 0.0)
    assert hit_bytes(entry, False, False, 0, "c" * 32, 99) == orjson.dumps(data)
    assert hit_bytes(entry, True, True, 0, "c" * 32, 99) == sse_chunks(data, True)
    assert entry.rendered == {(False, False, 0): None, (True, True, 0): None}


def test_a_hits_charge_is_the_fraction_rounded_up_once():
    assert hit_charge(1_000_001, Fraction(0)) == 0
    assert hit_charge(1_000_001, Fraction(1, 10)) == 100_001
    assert hit_charge(7, Fraction(1, 3)) == 3
    assert hit_charge(9, Fraction(1)) == 9
