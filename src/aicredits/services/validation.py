"""Checks on a chat request's shape, so bad input is a 400 naming the field, never a 500."""

from __future__ import annotations

from aicredits.errors import InvalidRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _int_field(body: dict, name: str, lo: int, hi: int | None = None) -> None:
    v = body.get(name)
    if v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InvalidRequest(f"'{name}' must be {bound}.", param=name)


def validate_chat(body: object) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("'model' is required.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}.",
                                 param=f"messages[{i}].role")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages[{i}].content must be a string or an array of parts.",
                                 param=f"messages[{i}].content")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    _int_field(body, "max_tokens", 1)
    _int_field(body, "max_completion_tokens", 1)
    _int_field(body, "n", 1, 128)
    t = body.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        raise InvalidRequest("'temperature' must be a number.", param="temperature")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    rf = body.get("response_format")
    if rf is not None and not isinstance(rf, dict):
        raise InvalidRequest("'response_format' must be an object.", param="response_format")
    return body
