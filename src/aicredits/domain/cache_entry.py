"""A cached answer (pure): what is stored, which answers may be stored, a streamed answer put
back together, a hit replayed as a response or as an SSE stream, and a hit's charge."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson

from aicredits.domain.money import ceil_fraction


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
    return b"".join(out)
