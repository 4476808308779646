"""Is a provider's 200 answer readable as the endpoint's answer (domain/answers.py)?"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.answers import chat_answer_problem, embeddings_answer_problem, responses_answer_problem

MESSAGE = {"role": "assistant", "content": "Hi", "refusal": None}


@pytest.mark.parametrize("message", [
    MESSAGE,
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
    {"role": "assistant", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]},
    {},
])
def test_readable_chat_answers(message):
    assert chat_answer_problem({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}) is None


@pytest.mark.parametrize("data,problem", [
    ({}, "'choices' is not an array"),
    ({"choices": {"0": {}}}, "'choices' is not an array"),
    ({"choices": []}, "'choices' is empty"),
    ({"choices": [None]}, "choices[0] is not an object"),
    ({"choices": [{"index": 0}]}, "choices[0].message is not an object"),
    ({"choices": [{"message": MESSAGE}, {"message": "Hi"}]}, "choices[1].message is not an object"),
    ({"choices": [{"message": {"content": 5}}]}, "choices[0].message.content is not a string"),
    ({"choices": [{"message": {"content": [{"text": 5}]}}]}, "part that is not a text object"),
    ({"choices": [{"message": {"refusal": ["no"]}}]}, "refusal is not a string"),
    ({"choices": [{"message": {"tool_calls": {"id": "c"}}}]}, "tool_calls is not an array"),
    ({"choices": [{"message": {"tool_calls": [{"function": ["f"]}]}}]}, "not a function object"),
    ({"choices": [{"message": {"function_call": {"name": 1}}}]}, "not a function object"),
    ({"choices": [{"message": MESSAGE, "finish_reason": 3}]}, "finish_reason is not a string"),
])
def test_malformed_chat_answers(data, problem):
    assert problem in chat_answer_problem(data)


def test_responses_answers():
    assert responses_answer_problem({"output": [], "status": "completed"}) is None
    assert responses_answer_problem({"output": [{"type": "message"}]}) is None
    assert "'output'" in responses_answer_problem({"output": {"type": "message"}})
    assert "'output'" in responses_answer_problem({"output": ["x"]})
    assert "'status'" in responses_answer_problem({"output": [], "status": 1})


def test_embeddings_answers():
    assert embeddings_answer_problem({"data": [{"embedding": [0.5, -1, 0]}, {"embedding": "AAAA"}]}) is None
    assert "'data' is not an array" in embeddings_answer_problem({"data": {"0": {}}})
    assert "'data' is empty" in embeddings_answer_problem({"data": []})
    assert "data[1] is not an object" in embeddings_answer_problem({"data": [{"embedding": []}, 5]})
    for vec in (["a"], [None], [True], [1e39], [float("nan")], [10**40], {"0": 1.0}, None):
        assert "data[0].embedding" in embeddings_answer_problem({"data": [{"embedding": vec}]})


ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                   lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                   max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["choices", "data", "output", "status", "usage"]), ANY))
def test_the_checks_never_raise(data):
    for check in (chat_answer_problem, embeddings_answer_problem, responses_answer_problem):
        assert check(data) is None or isinstance(check(data), str)
