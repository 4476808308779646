"""StreamMeter: what an OpenAI-shaped stream delivered, how it ended, and its usage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.streaming import StreamMeter

SETTINGS = settings(max_examples=200, deadline=None)


def chunk(delta: dict | None = None, *, index: int = 0, finish: str | None = None, **extra) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [{"index": index, "delta": delta if delta is not None else {}, "finish_reason": finish}],
            **extra}


def meter_of(*chunks: dict, done: bool = False) -> StreamMeter:
    m = StreamMeter()
    for c in chunks:
        m.observe(c)
    m.done = done
    return m


def test_a_fresh_meter_has_seen_nothing():
    m = StreamMeter()
    assert (m.text_bytes, m.fragments, m.finished, m.usage, m.error, m.done) == (0, 0, {}, None, None, False)
    assert not m.delivered_output and not m.complete


def test_role_only_chunks_deliver_no_output():
    m = meter_of(chunk({"role": "assistant"}), chunk({"role": "assistant", "content": ""}))
    assert m.fragments == 0 and m.text_bytes == 0
    assert not m.delivered_output


def test_text_fragments_are_counted_in_utf8_bytes():
    m = meter_of(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}),
                 chunk({"content": ", नमस्ते"}), chunk({"content": "🙂"}))
    assert m.fragments == 3
    assert m.text_bytes == len(b"Hello") + len(", नमस्ते".encode()) + 4
    assert m.delivered_output


def test_refusal_fragments_count_as_output():
    m = meter_of(chunk({"refusal": "I can't"}), chunk({"refusal": " help."}))
    assert m.fragments == 2 and m.text_bytes == len("I can't help.")
    assert m.delivered_output


def test_tool_call_fragments_are_counted():
    m = meter_of(
        chunk({"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Pune\"}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "f", "arguments": "{}"}},
                              {"index": 2, "function": {"arguments": None}}]}),
        chunk(finish="tool_calls"),
    )
    assert m.fragments == 4
    assert m.text_bytes == len("get_weather") + len('{"city":') + len('"Pune"}') + len("f{}")
    assert m.finished == {0: "tool_calls"}


def test_legacy_function_call_fragments_are_output():
    """The pre-tools `function_call` delta: its name and argument fragments are delivered output."""
    m = meter_of(chunk({"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ""}}),
                 chunk({"function_call": {"arguments": "{\"city\":"}}),
                 chunk({"function_call": {"arguments": "\"Pune\"}"}}),
                 chunk({"function_call": {"arguments": None}}))
    assert m.fragments == 3
    assert m.text_bytes == len("get_weather") + len('{"city":') + len('"Pune"}')
    assert m.delivered_output


def test_an_error_finish_is_seen_on_any_choice():
    assert not meter_of(chunk({"content": "a"}), chunk(finish="stop"), done=True).error_finish
    m = meter_of(chunk(finish="error"), done=True)
    assert m.error_finish and not m.delivered_output
    m = meter_of(chunk({"content": "a"}, index=0), chunk(index=0, finish="stop"), chunk(index=1, finish="error"),
                 done=True)
    assert m.error_finish and m.delivered_output


def test_an_empty_usage_object_is_kept_as_sent():
    """{} is usage that arrived incomplete (the services estimate and warn), unlike OpenAI's null."""
    m = meter_of(chunk({"content": "hi"}, usage=None), {"id": "chatcmpl-1", "choices": [], "usage": {}})
    assert m.usage == {}


def test_reasoning_deltas_count_as_delivered_output():
    # OpenAI-compatible providers stream reasoning as `reasoning_content` (DeepSeek, vLLM) or
    # `reasoning` (OpenRouter); it is forwarded to the client and billed as completion tokens,
    # so a stream cut while reasoning has delivered output (docs/billing.md: reasoning included).
    m = meter_of(chunk({"role": "assistant", "reasoning_content": "Let me think"}),
                 chunk({"reasoning": " about it"}))
    assert m.fragments == 2
    assert m.text_bytes == len("Let me think about it")
    assert m.delivered_output


def test_finish_reasons_are_kept_per_choice():
    m = meter_of(chunk({"content": "a"}, index=0), chunk({"content": "b"}, index=1),
                 chunk(index=1, finish="length"), chunk(index=0, finish="stop"), done=True)
    assert m.finished == {0: "stop", 1: "length"}
    assert m.complete


def test_a_missing_choice_index_means_zero():
    m = StreamMeter()
    m.observe({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})
    assert m.finished == {0: "stop"}


def test_usage_chunk_is_kept_and_null_usage_does_not_erase_it():
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    m = meter_of(chunk({"content": "hi"}, usage=None), chunk(finish="stop", usage=None),
                 {"id": "chatcmpl-1", "choices": [], "usage": usage}, chunk({}, usage=None), done=True)
    assert m.usage == usage
    assert m.complete


def test_the_first_chunk_names_the_stream():
    m = meter_of(chunk({"role": "assistant"}), {"id": "other", "model": "x", "created": 1, "choices": []})
    assert (m.id, m.model, m.created) == ("chatcmpl-1", "gpt-4o-mini", 1700000000)


def test_an_error_object_is_recorded():
    err = {"message": "upstream overloaded", "type": "server_error", "code": None}
    m = meter_of(chunk({"content": "par"}), {"error": err}, done=True)
    assert m.error == err
    assert m.delivered_output and not m.complete


def test_an_error_string_is_recorded_as_a_message():
    m = meter_of({"error": "boom"})
    assert m.error == {"message": "boom"}
    assert not m.complete and not m.delivered_output


def test_a_stream_without_done_or_finish_is_not_complete():
    assert not meter_of(chunk({"content": "x"}), chunk(finish="stop")).complete          # no [DONE]
    assert not meter_of(chunk({"content": "x"}), done=True).complete                    # no finish
    assert meter_of(chunk({"content": "x"}), chunk(finish="stop"), done=True).complete


def test_chunks_without_choices_or_deltas_are_harmless():
    m = meter_of({}, {"choices": None}, {"choices": []}, {"choices": [{"index": 0, "delta": None}]},
                 {"choices": [{"index": 0, "delta": {"tool_calls": None, "content": None}}]})
    assert m.fragments == 0 and m.finished == {} and m.error is None


piece_st = st.text(max_size=12)
delta_st = st.one_of(
    st.builds(lambda t: {"content": t}, piece_st),
    st.builds(lambda t: {"refusal": t}, piece_st),
    st.builds(lambda n, a: {"tool_calls": [{"index": 0, "function": {"name": n, "arguments": a}}]},
              st.one_of(st.none(), piece_st), st.one_of(st.none(), piece_st)),
    st.builds(lambda n, a: {"function_call": {"name": n, "arguments": a}},
              st.one_of(st.none(), piece_st), st.one_of(st.none(), piece_st)),
    st.just({"role": "assistant"}),
)


def _delivered(delta: dict) -> list[str]:
    out = [delta.get("content") or "", delta.get("refusal") or ""]
    calls = [call["function"] for call in delta.get("tool_calls") or ()]
    if delta.get("function_call"):
        calls.append(delta["function_call"])
    for fn in calls:
        out.append((fn["name"] or "") + (fn["arguments"] or ""))
    return [p for p in out if p]


@SETTINGS
@given(st.lists(st.tuples(delta_st, st.integers(0, 2)), max_size=30))
def test_fragments_and_bytes_add_up_over_any_stream(deltas):
    m = StreamMeter()
    pieces: list[str] = []
    for delta, index in deltas:
        m.observe(chunk(delta, index=index))
        pieces += _delivered(delta)
    assert m.fragments == len(pieces)
    assert m.text_bytes == sum(len(p.encode("utf-8", "surrogatepass")) for p in pieces)
    assert m.delivered_output is (len(pieces) > 0)
    assert not m.complete
