"""A cached answer (pure): what is stored, which answers may be stored, a streamed answer put
back together, a hit replayed as a response or as an SSE stream, and a hit's charge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from os import urandom
from typing import Any

import orjson

from aicredits.domain.money import ceil_fraction, micros_to_inr


@dataclass
class CacheEntry:
    key: str                    # the exact key (domain/cache_rules.py)
    scope: str                  # "a:<account>", "k:<key id>" or "shared"
    account_id: int             # the account whose call made it
    model: str                  # the catalog id that answered
    response: bytes             # the chat.completion JSON
    prompt_tokens: int
    completion_tokens: int
    charge: int                 # micro-INR the original call was charged
    created_at: int             # epoch ms
    expires_at: int             # epoch ms
    context: str | None = None  # the semantic context key (None: exact only)
    query: str | None = None    # the embedded last user turn
    vector: bytes | None = None  # its embedding, float32 little-endian
    provider: str = ""
    parsed: dict | None = None  # `response` read once (a hot entry serves many hits)
    # this process's hit answers made once: (stream, include_usage, charge) -> Template (`hit_bytes`)
    rendered: dict[tuple[bool, bool, int], Template | None] | None = None


# what a store's feed gives of each new entry: (key, scope, context, query, vector, expires_at)
FeedRow = tuple[str, str, str | None, str | None, bytes | None, int]


def storable(data: dict) -> bool:
    """Only a whole, clean answer is stored: every choice finished with "stop", no refusal,
    no tool call, no error."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or data.get("error"):
        return False
    for c in choices:
        if not isinstance(c, dict) or c.get("finish_reason") != "stop":
            return False
        msg = c.get("message")
        if not isinstance(msg, dict) or msg.get("refusal") or msg.get("tool_calls") or msg.get("function_call"):
            return False
        if not isinstance(msg.get("content"), str):
            return False
    return True


class StreamAssembler:
    """Puts a streamed answer back together as a chat.completion, chunk by chunk."""
    __slots__ = ("content", "created", "extra", "finish", "id", "model", "reasoning", "refused", "role",
                 "system_fingerprint", "usage")

    def __init__(self) -> None:
        self.id = self.model = self.system_fingerprint = None
        self.created = None
        self.role = "assistant"
        self.content: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}
        self.refused = False
        self.usage = None

    def observe(self, chunk: dict) -> None:
        if self.id is None:
            self.id, self.model, self.created = chunk.get("id"), chunk.get("model"), chunk.get("created")
            self.system_fingerprint = chunk.get("system_fingerprint")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            i = c.get("index", 0)
            d = c.get("delta") or {}
            if d.get("content"):
                self.content.setdefault(i, []).append(d["content"])
            for f in ("reasoning_content", "reasoning"):
                if isinstance(d.get(f), str) and d[f]:
                    self.reasoning.setdefault(i, []).append(d[f])
            if d.get("refusal") or d.get("tool_calls") or d.get("function_call"):
                self.refused = True
            if c.get("finish_reason"):
                self.finish[i] = c["finish_reason"]

    def completion(self) -> dict | None:
        """The chat.completion, or None when the answer may not be stored."""
        if self.refused or not self.finish:
            return None
        choices = []
        for i in sorted(self.finish):
            msg = {"role": "assistant", "content": "".join(self.content.get(i, ())), "refusal": None}
            if i in self.reasoning:
                msg["reasoning_content"] = "".join(self.reasoning[i])
            choices.append({"index": i, "message": msg, "logprobs": None, "finish_reason": self.finish[i]})
        data = {"id": self.id or "chatcmpl-cache", "object": "chat.completion", "created": self.created or 0,
                "model": self.model or "", "choices": choices}
        if self.system_fingerprint:
            data["system_fingerprint"] = self.system_fingerprint
        if self.usage:
            data["usage"] = self.usage
        return data if storable(data) else None


def hit_charge(original: int, price: Fraction) -> int:
    """A hit's charge: the configured fraction of the original call's charge, rounded up once."""
    return ceil_fraction(Fraction(original) * price) if price else 0


def hit_response(entry: CacheEntry, call_id: str, now_s: int, cost_inr: float) -> dict:
    """The cached chat.completion as this call's answer: a fresh id and time, and the gateway's
    model id (entries stored before answers carried it may hold the upstream's name); a shallow
    copy: the stored parts are shared, never changed."""
    if entry.parsed is None:
        entry.parsed = orjson.loads(entry.response)
    data = dict(entry.parsed, id="chatcmpl-" + call_id, created=now_s)
    if entry.model:
        data["model"] = entry.model
    if isinstance(data.get("usage"), dict):
        data["usage"] = dict(data["usage"], cost=cost_inr)
    return data


def sse_chunks(data: dict, include_usage: bool, piece: int = 256) -> bytes:
    """A cached answer as a well-formed chat.completion.chunk stream: the role, the content in
    pieces, the finish, the usage chunk when asked, then [DONE]."""
    return b"".join(sse_chunk_list(data, include_usage, piece))


def sse_chunk_list(data: dict, include_usage: bool, piece: int = 256) -> list[bytes]:
    """`sse_chunks`, one event per item."""
    base = {"id": data["id"], "object": "chat.completion.chunk", "created": data["created"],
            "model": data.get("model", "")}
    if data.get("system_fingerprint"):
        base["system_fingerprint"] = data["system_fingerprint"]
    out = []

    def emit(choices: list[dict[str, Any]], **extra: object) -> None:
        out.append(b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n")

    for c in data["choices"]:
        i = c.get("index", 0)
        msg = c.get("message") or {}
        emit([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
        reasoning = msg.get("reasoning_content") or ""
        for k in range(0, len(reasoning), piece):
            emit([{"index": i, "delta": {"reasoning_content": reasoning[k:k + piece]}, "logprobs": None,
                   "finish_reason": None}])
        text = msg.get("content") or ""
        for k in range(0, len(text), piece):
            emit([{"index": i, "delta": {"content": text[k:k + piece]}, "logprobs": None, "finish_reason": None}])
        emit([{"index": i, "delta": {}, "logprobs": None, "finish_reason": c.get("finish_reason", "stop")}])
    if include_usage and isinstance(data.get("usage"), dict):
        emit([], usage=data["usage"])
    out.append(b"data: [DONE]\n\n")
    return out


# A hit's answer as bytes, made once per entry and charge and filled in per hit (`hit_bytes`):
# the answer is encoded with two marks in place of the call's id and time, then split there.
# A mark is found only as a whole JSON string, quotes included (inside a string a quote is
# escaped), and the marks are random per process and never leave it; an encoding where they
# are not found exactly where they were put is not templated (encoded per hit instead).
_MARK = urandom(16).hex()
_ID_MARK, _TIME_MARK = "m" + _MARK, "t" + _MARK
_ID_TOKEN, _TIME_TOKEN = b'"chatcmpl-' + _ID_MARK.encode() + b'"', b'"' + _TIME_MARK.encode() + b'"'
_MARKS = re.compile(re.escape(_ID_TOKEN) + b"|" + re.escape(_TIME_TOKEN))
# pieces, and which value goes after each but the last (0: the id, 1: the time)
Template = tuple[tuple[bytes, ...], tuple[int, ...]]


def _template(encoded: bytes, expected: int) -> Template | None:
    """`encoded` split at its marks, which it must hold `expected` times each (an id and a time
    per event), else None."""
    found = _MARKS.findall(encoded)
    order = tuple(0 if m == _ID_TOKEN else 1 for m in found)
    if not expected or order.count(0) != expected or order.count(1) != expected:
        return None
    return tuple(_MARKS.split(encoded)), order


def hit_bytes(entry: CacheEntry, stream: bool, include_usage: bool, charged: int, call_id: str,
              now_s: int) -> bytes:
    """The hit's body as `orjson.dumps(hit_response(...))` (or, streamed, `sse_chunks(...)`) would
    make it, without encoding it again: the entry's template for this charge, filled with the
    call's id and time."""
    rendered = entry.rendered
    if rendered is None:
        rendered = entry.rendered = {}
    k = (stream, include_usage, charged)
    if k in rendered:
        tpl = rendered[k]
    else:
        if len(rendered) >= 8:   # one charge per entry and price: a few keys at most
            rendered.clear()
        marked = hit_response(entry, _ID_MARK, _TIME_MARK, micros_to_inr(charged))   # type: ignore[arg-type]
        if stream:
            chunks = sse_chunk_list(marked, include_usage)
            tpl = rendered[k] = _template(b"".join(chunks), len(chunks) - 1)   # the last: [DONE]
        else:
            tpl = rendered[k] = _template(orjson.dumps(marked), 1)
    if tpl is None:
        data = hit_response(entry, call_id, now_s, micros_to_inr(charged))
        return sse_chunks(data, include_usage) if stream else orjson.dumps(data)
    pieces, order = tpl
    values = (b'"chatcmpl-' + call_id.encode() + b'"', str(now_s).encode())
    out = [pieces[0]]
    for i, which in enumerate(order, 1):
        out.append(values[which])
        out.append(pieces[i])
    return b"".join(out)
