"""The demo provider: answers offline, priced like any model, so a newcomer with no provider
key sees one whole call billed, and can try every chat feature. Opt-in by model id (`demo/...`).

What it answers (docs/providers.md, "The demo model"):
- text: "Hello from the aicredits demo model. You said: <the last user message>", cut to
  `max_tokens` words (finish_reason "length");
- tools: a call of one of the request's `tools` when `tool_choice` requires one ("required", or
  a named function), or when it is "auto" (the default) and the last user message names a
  tool (its name, `_` read as a space, any case) or says "tool"; `tool_choice: "none"` never
  calls. The arguments are JSON holding every required property of the function's
  `parameters`, each a value of its schema (const, default, enum's first, or a sample of its
  type). After a `tool` message it answers in text, quoting the tool's result;
- JSON mode: `response_format` json_object -> {"reply": <the text>}; json_schema -> an object
  of that schema (required properties, as for tool arguments; strings say the reply);
- streaming of each, in OpenAI's chunk shape (tool-call arguments in several deltas).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from os import urandom

import orjson

from aicredits.domain.media import InputCosts
from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens
from aicredits.providers.base import DONE, ChatResult, StreamEvent, Target

WORDS = re.compile(r"\S+\s*")
ARG_PIECE = 12     # characters of tool-call arguments per streamed delta
MAX_DEPTH = 8      # nested schemas deeper than this get null


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _last_user_text(body: dict) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _text_of(msg.get("content"))
    return ""


def _limit(body: dict) -> int | None:
    for k in ("max_completion_tokens", "max_tokens"):
        v = body.get(k)
        if isinstance(v, int) and v > 0:
            return v
    return None


# ------------------------------------------------------------------ values of a JSON schema
def sample(schema: object, name: str = "value", text: str = "", depth: int = 0) -> object:
    """A value valid for a (simple) JSON schema: its const, default, first enum value or first
    example; else one of its type, objects with every required property."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return text or f"example {name}"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return sample(schema[key][0], name, text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), dict)):
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        return {k: sample(props.get(k), k, text, depth + 1) for k in required if isinstance(k, str)}
    if kind == "array":
        n = schema.get("minItems")
        count = max(1, min(n, 3)) if isinstance(n, int) else 1
        return [sample(schema.get("items"), name, text, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1)) if isinstance(schema.get("minimum", 1), int) else 1
    if kind == "number":
        low = schema.get("minimum", 1)
        return low if isinstance(low, (int, float)) and not isinstance(low, bool) and low > 0 else 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text or f"example {name}"


# ------------------------------------------------------------------ what to answer
def _functions(body: dict) -> list[dict]:
    out = []
    for t in body.get("tools") or []:
        if isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict):
            fn = t["function"]
            if isinstance(fn.get("name"), str) and fn["name"]:
                out.append(fn)
    return out


def _tool_to_call(body: dict) -> dict | None:
    """The function the demo calls, or None (it answers in text)."""
    functions = _functions(body)
    choice = body.get("tool_choice", "auto")
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not functions or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        return next((f for f in functions if f["name"] == wanted), functions[0])
    if choice == "required":
        return functions[0]
    said = _last_user_text(body).lower()
    for fn in functions:
        if fn["name"].lower() in said or fn["name"].replace("_", " ").lower() in said:
            return fn
    return functions[0] if re.search(r"\btools?\b", said) else None


def _reply_text(body: dict) -> str:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "tool":
        result = " ".join(_text_of(messages[-1].get("content")).split())[:200]
        return f"The tool answered: {result}" if result else "The tool answered with nothing."
    said = " ".join(_last_user_text(body).split())[:200]
    return f"Hello from the aicredits demo model. You said: {said}" if said else "Hello from the aicredits demo model."


def _json_content(body: dict, text: str) -> str | None:
    """The answer's content in JSON mode (None: not asked)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return orjson.dumps({"reply": text}).decode()
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema", {"type": "object"}) if isinstance(spec, dict) else {"type": "object"}
        value = sample(schema, "reply", text)
        return orjson.dumps(value).decode()
    return None


class Answer:
    """One demo answer: text (maybe JSON) or a tool call, its finish and its output tokens."""

    def __init__(self, body: dict) -> None:
        limit = _limit(body)
        self.call: dict | None = None
        fn = _tool_to_call(body)
        if fn is not None:
            args = orjson.dumps(sample(fn.get("parameters", {"type": "object"}), fn["name"])).decode()
            if not args.startswith("{"):
                args = "{}"
            self.call = {"id": "call_demo_" + urandom(8).hex(), "type": "function",
                         "function": {"name": fn["name"], "arguments": args}}
            self.pieces = [args[i:i + ARG_PIECE] for i in range(0, len(args), ARG_PIECE)]
            self.text, self.finish = None, "tool_calls"
            self.tokens = estimate_text_tokens(len(args.encode()))
        else:
            text = _reply_text(body)
            as_json = _json_content(body, text)
            if as_json is not None:
                self.text, self.finish = as_json, "stop"
                self.pieces = WORDS.findall(as_json) or [as_json]
                self.tokens = estimate_text_tokens(len(as_json.encode()), len(self.pieces))
            else:
                words = WORDS.findall(text)
                self.finish = "stop"
                if limit is not None and len(words) > limit:
                    words, self.finish = words[:limit], "length"
                self.text, self.pieces, self.tokens = "".join(words), words, len(words)
        if limit is not None:
            self.tokens = min(self.tokens, limit)
        self.tokens = max(1, self.tokens)

    def message(self) -> dict:
        if self.call is not None:
            return {"role": "assistant", "content": None, "tool_calls": [self.call]}
        return {"role": "assistant", "content": self.text}

    def deltas(self) -> list[dict]:
        """The streamed deltas after the first (role) one."""
        if self.call is None:
            return [{"content": p} for p in self.pieces]
        fn = self.call["function"]
        head = {"tool_calls": [{"index": 0, "id": self.call["id"], "type": "function",
                                "function": {"name": fn["name"], "arguments": ""}}]}
        return [head, *({"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in self.pieces)]


def _usage(body: dict, completion: int) -> dict:
    prompt = estimate_prompt_tokens(body)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class DemoStream:
    def __init__(self, body: dict, upstream_id: str) -> None:
        self._body = body
        self._model = upstream_id

    def partial_usage(self) -> dict | None:
        return None   # its usage comes whole, in the last chunk

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        answer = Answer(self._body)
        base = {"id": "chatcmpl-demo-" + urandom(6).hex(), "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self._model}
        first = {"role": "assistant", "content": None if answer.call is not None else ""}
        yield [StreamEvent({**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})]
        for delta in answer.deltas():
            await asyncio.sleep(0.01)
            yield [StreamEvent({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})]
        yield [StreamEvent({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": answer.finish}]}),
               StreamEvent({**base, "choices": [], "usage": _usage(self._body, answer.tokens)}),
               StreamEvent(DONE)]

    async def aclose(self) -> None:
        return None


class DemoProvider:
    name = "demo"
    kind = "demo"
    max_tokens_field = "max_tokens"

    def input_costs(self, upstream_id: str) -> InputCosts:
        """It bills the estimator's count of the text (media parts are not read): no formula."""
        return InputCosts()

    async def chat(self, body: dict, target: Target) -> ChatResult:
        answer = Answer(body)
        return ChatResult({
            "id": "chatcmpl-demo-" + urandom(6).hex(), "object": "chat.completion",
            "created": int(time.time()), "model": target.upstream_id,
            "choices": [{"index": 0, "message": answer.message(), "finish_reason": answer.finish}],
            "usage": _usage(body, answer.tokens),
        })

    async def stream(self, body: dict, target: Target) -> DemoStream:
        return DemoStream(body, target.upstream_id)

    async def close(self) -> None:
        return None
