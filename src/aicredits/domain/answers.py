"""Is a provider's 200 answer readable as the endpoint's answer? Each check returns what is wrong
(a short phrase for the client's 502) or None. Only the fields the gateway reads or passes on are
checked; unknown fields are the provider's business."""

from __future__ import annotations

import math

FLOAT32_MAX = 3.4028234663852886e38   # a float vector is sent as float32 when base64 is asked for


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _message_problem(msg: object, where: str) -> str | None:
    if not isinstance(msg, dict):
        return f"{where}.message is not an object"
    content = msg.get("content")
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict) or not _text_or_none(part.get("text")):
                return f"{where}.message.content has a part that is not a text object"
    elif not _text_or_none(content):
        return f"{where}.message.content is not a string"
    if not _text_or_none(msg.get("refusal")):
        return f"{where}.message.refusal is not a string"
    calls = msg.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        return f"{where}.message.tool_calls is not an array"
    fns = [c.get("function") if isinstance(c, dict) else c for c in calls or ()]
    if msg.get("function_call") is not None:
        fns.append(msg["function_call"])
    for fn in fns:
        if fn is not None and not (isinstance(fn, dict) and _text_or_none(fn.get("name"))
                                   and _text_or_none(fn.get("arguments"))):
            return f"{where}.message has a tool call that is not a function object"
    return None


def chat_answer_problem(data: dict) -> str | None:
    """A chat.completion: `choices`, a non-empty array of objects, each with a `message` object
    whose content, refusal and tool calls have their types."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        return "'choices' is not an array"
    if not choices:
        return "'choices' is empty"
    for i, choice in enumerate(choices):
        where = f"choices[{i}]"
        if not isinstance(choice, dict):
            return f"{where} is not an object"
        problem = _message_problem(choice.get("message"), where)
        if problem is not None:
            return problem
        if not _text_or_none(choice.get("finish_reason")):
            return f"{where}.finish_reason is not a string"
    return None


def responses_answer_problem(data: dict) -> str | None:
    """A Response: `output`, an array of objects; `status`, a string."""
    output = data.get("output")
    if not isinstance(output, list) or not all(isinstance(item, dict) for item in output):
        return "'output' is not an array of objects"
    if not _text_or_none(data.get("status")):
        return "'status' is not a string"
    return None


def _number(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool) and abs(v) <= FLOAT32_MAX) or \
        (isinstance(v, float) and math.isfinite(v) and abs(v) <= FLOAT32_MAX)


def embeddings_answer_problem(data: dict) -> str | None:
    """An embeddings list: `data`, a non-empty array of objects whose `embedding` is an array of
    numbers (float32 range) or a base64 string."""
    items = data.get("data")
    if not isinstance(items, list):
        return "'data' is not an array"
    if not items:
        return "'data' is empty"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"data[{i}] is not an object"
        vec = item.get("embedding")
        if isinstance(vec, str):
            continue
        if not isinstance(vec, list) or not all(_number(v) for v in vec):
            return f"data[{i}].embedding is not an array of numbers"
    return None
