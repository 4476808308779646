"""Checks on a request's shape, so bad input is a 400 naming the field, never a 500: the chat
request's, and the pieces /v1/responses uses too (services/responses_translate.py)."""

from __future__ import annotations

from aicredits.errors import InvalidRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# arrays and objects nested deeper than this are refused (400): the gateway re-encodes bodies
# with orjson, whose limit is 254 levels, and walks them recursively; JSON schemas in real
# requests stay far below
MAX_NESTING = 100
_BRANCHES = {dict, list}


def too_deep(limit: int = MAX_NESTING) -> InvalidRequest:
    return InvalidRequest(f"The request body is nested too deeply: arrays and objects may nest at most {limit} "
                          f"levels.")


def check_nesting(body: object, limit: int = MAX_NESTING) -> None:
    """A 400 when the parsed body nests arrays and objects more than `limit` levels deep (the
    body itself is level 1). Walked level by level, without recursion."""
    level = [body] if type(body) in _BRANCHES else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise too_deep(limit)
        below = []
        for node in level:
            below.extend(v for v in (node.values() if type(node) is dict else node) if type(v) in _BRANCHES)
        level = below


def request_body(body: object) -> dict:
    """A JSON object naming a model."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("'model' is required.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    return body


def typed_fields(body: dict, *fields: tuple[str, type | tuple[type, ...], str]) -> None:
    """Each (name, type, what) field, where given, is of its type ("'stream' must be a boolean."),
    checked in order."""
    for name, kind, what in fields:
        v = body.get(name)
        if v is not None and not isinstance(v, kind):
            raise InvalidRequest(f"'{name}' must be {what}.", param=name)


def number_field(body: dict, name: str) -> None:
    v = body.get(name)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise InvalidRequest(f"'{name}' must be a number.", param=name)


def _int_field(body: dict, name: str, lo: int, hi: int | None = None) -> None:
    v = body.get(name)
    if v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InvalidRequest(f"'{name}' must be {bound}.", param=name)


def object_item(value: object, where: str) -> dict:
    """An array's item (a message, an input item, a content part) that must be an object."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object.", param=where)
    return value


def content_field(content: object, where: str) -> None:
    """A message's content: a string or an array of parts."""
    if not isinstance(content, (str, list)):
        raise InvalidRequest(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")


def validate_chat(body: object) -> dict:
    body = request_body(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        object_item(m, where)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"{where}.role must be one of {', '.join(sorted(ROLES))}.", param=f"{where}.role")
        if m.get("content") is not None:
            content_field(m["content"], where)
    typed_fields(body, ("stream", bool, "a boolean"), ("stream_options", dict, "an object"))
    _int_field(body, "max_tokens", 1)
    _int_field(body, "max_completion_tokens", 1)
    _int_field(body, "n", 1, 128)
    number_field(body, "temperature")
    typed_fields(body, ("tools", list, "an array"), ("response_format", dict, "an object"))
    return body
