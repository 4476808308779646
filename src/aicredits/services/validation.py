"""Checks on a request's shape, so bad input is a 400 naming the field, never a 500: the chat
request's, and the pieces /v1/responses uses too (services/responses_translate.py)."""

from __future__ import annotations

from aicredits.errors import InvalidRequest, RequestTooLarge

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# arrays and objects nested deeper than this are refused (400): the gateway re-encodes bodies
# with orjson, whose limit is 254 levels, and walks them recursively; JSON schemas in real
# requests stay far below
MAX_NESTING = 100
_BRANCHES = {dict, list}
# A parsed body takes far more memory than its bytes: orjson makes about 250 bytes of Python
# objects of a 16-byte {"role":"user"}, so 40 MiB of them took a worker to 930 MB. Its structure
# is therefore counted in the bytes, before parsing (check_json_size), and bounded:
MAX_JSON_CONTAINERS = 100_000   # objects and arrays (about 25 MB parsed at most)
MAX_JSON_VALUES = 500_000       # the items in them (each ',' and each object or array counts one)
# and, right after parsing, the arrays the gateway walks (a 400 naming the field):
MAX_MESSAGES = 10_000           # chat `messages`, /v1/responses `input` items
MAX_CONTENT_PARTS = 10_000      # content parts of all messages together


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
        below: list[object] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
            below.extend(v for v in children if type(v) in _BRANCHES)
        level = below


def check_json_size(raw: bytes | bytearray) -> None:
    """A 413 when the body holds more than MAX_JSON_CONTAINERS objects and arrays or more than
    MAX_JSON_VALUES items: the '{', '[' and ',' bytes outside strings, counted between one string
    and the next (bytes.find and bytes.count, in C) and stopping at the first limit passed, so the
    cost is bounded by the limits, not by the body. A body under 100 kB cannot pass them and is not
    read. Strings are told apart once escaped backslashes and quotes are removed; a body that is
    not JSON gets a meaningless count here and its 400 from the parser."""
    if len(raw) <= MAX_JSON_CONTAINERS:
        return
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    containers = values = pos = 0
    end = len(raw)
    find, count = raw.find, raw.count
    while pos < end:
        quote = find(b'"', pos)
        stop = end if quote < 0 else quote
        if stop > pos:
            c = count(b"{", pos, stop) + count(b"[", pos, stop)
            containers += c
            values += c + count(b",", pos, stop)
            if containers > MAX_JSON_CONTAINERS:
                raise RequestTooLarge(f"The request body holds more than {MAX_JSON_CONTAINERS:,} JSON objects "
                                      "and arrays; send fewer items.")
            if values > MAX_JSON_VALUES:
                raise RequestTooLarge(f"The request body holds more than {MAX_JSON_VALUES:,} JSON values; "
                                      "send fewer items.")
        if quote < 0:
            return
        closing = find(b'"', quote + 1)
        if closing < 0:
            return
        pos = closing + 1


def check_counts(items: list, what: str, param: str) -> None:
    """A 400 when a request's array (`messages`, `input`) has more items than MAX_MESSAGES, and
    when all its items together have more content parts than MAX_CONTENT_PARTS: checked before
    anything walks them."""
    if len(items) > MAX_MESSAGES:
        raise InvalidRequest(f"'{param}' has {len(items):,} {what}; at most {MAX_MESSAGES:,} are accepted.",
                             param=param)
    parts = 0
    for item in items:
        content = item.get("content") if type(item) is dict else None
        if type(content) is list:
            parts += len(content)
    if parts > MAX_CONTENT_PARTS:
        raise InvalidRequest(f"The {what} in '{param}' have {parts:,} content parts together; at most "
                             f"{MAX_CONTENT_PARTS:,} are accepted.", param=param)


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


def whole_number(body: dict, name: str) -> None:
    """A float with no fraction in an integer field (`"n": 35.0`, an integer in JSON Schema) becomes
    that integer, so it is checked, and forwarded, as one."""
    v = body.get(name)
    if type(v) is float and v.is_integer():
        body[name] = int(v)


def _int_field(body: dict, name: str, lo: int, hi: int | None = None) -> None:
    whole_number(body, name)
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


def content_field(content: object, where: str) -> str | list[object]:
    """A message's content: a string or an array of parts."""
    if not isinstance(content, (str, list)):
        raise InvalidRequest(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")
    return content


def validate_chat(body: object) -> dict:
    body = request_body(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    check_counts(messages, "messages", "messages")
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
