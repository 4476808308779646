"""OpenAI Chat Completions <-> Anthropic Messages, as pure functions.

Request: system/developer messages become the top-level `system`; turns are merged so roles
alternate; tool calls and results become tool_use / tool_result blocks; only the fields the
Messages API knows are sent (unknown OpenAI fields are dropped, never forwarded). JSON mode is
emulated with a forced tool (`json_tool_call`) whose input is returned as the content.
Prompt caching (`cache: true` or `cache: {"ttl": "1h"}`) puts breakpoints on the last tool,
the system prompt and the newest user turn's last block.

Response: text blocks joined, tool_use -> tool_calls, stop_reason -> finish_reason, usage in
OpenAI's meaning (prompt_tokens includes cache reads and writes)."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from aicredits.domain.media import InputCosts, PixelImages
from aicredits.domain.usage import token_count
from aicredits.errors import InvalidRequest
from aicredits.providers.base import Target

JSON_TOOL = "json_tool_call"
DEFAULT_MAX_TOKENS = 4096
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter", "model_context_window_exceeded": "length", "pause_turn": "stop"}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,(.*)", re.DOTALL)
_EMAIL_OR_PHONE = re.compile(r"@|^\+?[\d\s().-]{7,}$")


# ---------------------------------------------------------------------------- input formulas
# The system prompt Anthropic adds when tools are sent, in tokens (its tool-use docs, "tool use
# system prompt token count"), by model id prefix: the larger of the tool_choice auto/none and
# any/tool rows, and the largest any revision of that table gave (the counts changed between them).
TOOL_PROMPT_TOKENS = {
    "claude-opus-4-8": 410, "claude-opus-4-7": 804, "claude-opus-4-6": 589, "claude-opus-4-5": 588,
    "claude-opus-4-1": 346, "claude-opus-4": 346, "claude-sonnet-5": 474, "claude-sonnet-4-6": 589,
    "claude-sonnet-4-5": 588, "claude-sonnet-4": 346, "claude-3-7-sonnet": 346, "claude-haiku-4-5": 588,
    "claude-3-5-haiku": 355, "claude-3-5-sonnet": 346, "claude-3-opus": 530, "claude-3-sonnet": 235,
    "claude-3-haiku": 340,
}
# JSON mode is emulated with one more tool (name, description and a default schema): its bytes
JSON_TOOL_BYTES = 160
PDF_PAGE_TEXT = 6000      # tokens of text per PDF page: twice the 3,000 Anthropic gives for dense pages
IMAGE_MAX_TOKENS = 1600   # an image is scaled down to at most about 1,600 tokens (w x h / 750)


def tool_prompt_tokens(upstream_id: str) -> int:
    model = upstream_id.lower()
    keys = [k for k in TOOL_PROMPT_TOKENS if model == k or model.startswith(k + "-")]
    return TOOL_PROMPT_TOKENS[max(keys, key=len)] if keys else max(TOOL_PROMPT_TOKENS.values())


def anthropic_input_costs(upstream_id: str) -> InputCosts:
    """Images by pixels (w x h / 750, at most ~1,600 tokens), PDF pages as text plus a page image,
    the hidden tool prompt (and the JSON-mode tool). Audio is refused before any cost (0)."""
    return InputCosts(image=PixelImages(750, IMAGE_MAX_TOKENS), pdf_page=PDF_PAGE_TEXT + IMAGE_MAX_TOKENS,
                      audio_per_second=0, tool_prompt=tool_prompt_tokens(upstream_id) + JSON_TOOL_BYTES)


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


# ---------------------------------------------------------------------------- request
def cache_ttl(value: object, param: str = "cache") -> str | None:
    """None (no caching), "5m" or "1h" from the request's `cache` field."""
    if value is None or value is False:
        return None
    if value is True:
        return "5m"
    if isinstance(value, dict):
        ttl = value.get("ttl") or "5m"
        if ttl in ("5m", "1h"):
            return ttl
        raise _bad("'cache.ttl' must be \"5m\" or \"1h\".", "cache.ttl")
    raise _bad("'cache' must be true, false or an object like {\"ttl\": \"1h\"}.", param)


def _text_of(content: object, param: str) -> list[str]:
    """The texts of a system/developer/tool message's content (string or text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string or an array of parts.", param)
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
            raise _bad(f"{param}[{j}] must be a text part here.", f"{param}[{j}]")
        out.append(str(part.get("text") or ""))
    return out


def _image(part: dict, param: str) -> dict:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise _bad(f"{param}.image_url.url is required.", f"{param}.image_url")
    if url.startswith("data:"):
        m = _DATA_URL.fullmatch(url)
        if not m:
            raise _bad(f"{param}: an image data URL must be base64 (data:image/png;base64,...).", param)
        return {"type": "image", "source": {"type": "base64", "media_type": m.group(1).lower(),
                                            "data": m.group(3)}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{param}: an image URL must be http(s) or a base64 data URL.", param)


def _file(part: dict, param: str) -> dict:
    f = part.get("file")
    f = f if isinstance(f, dict) else {}
    m = _DATA_URL.fullmatch(f.get("file_data") or "")
    if not m or m.group(1).lower() != "application/pdf":
        raise _bad(f"{param}: Anthropic models take files as base64 PDF data URLs only.", param)
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": m.group(3)}}


def _user_blocks(content: object, param: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string or an array of parts.", param)
    blocks = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "image_url":
            blocks.append(_image(part, p))
        elif kind == "file":
            blocks.append(_file(part, p))
        elif kind == "input_audio":
            raise _bad(f"{p}: audio input is not supported by Anthropic models.", p)
        else:
            raise _bad(f"{p}: unsupported content part type {kind!r}.", p)
    return blocks


def _assistant_blocks(msg: dict, param: str) -> list[dict]:
    content = msg.get("content")
    blocks: list[dict] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in ("text", "output_text", "refusal"):
                text = part.get("text") or part.get("refusal")
                if text:
                    blocks.append({"type": "text", "text": str(text)})
            else:
                raise _bad(f"{param}.content[{j}]: an assistant turn takes text parts only.",
                           f"{param}.content[{j}]")
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"{param}.tool_calls must be an array.", f"{param}.tool_calls")
    for j, call in enumerate(calls):
        p = f"{param}.tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not fn.get("name") or not call.get("id"):
            raise _bad(f"{p} needs an id and function.name.", p)
        args = fn.get("arguments") or "{}"
        try:
            value = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            raise _bad(f"{p}.function.arguments must be a JSON object.", f"{p}.function.arguments") from None
        if not isinstance(value, dict):
            raise _bad(f"{p}.function.arguments must be a JSON object.", f"{p}.function.arguments")
        blocks.append({"type": "tool_use", "id": str(call["id"]), "name": str(fn["name"]), "input": value})
    return blocks


def _tool_result(msg: dict, param: str) -> dict:
    if not msg.get("tool_call_id"):
        raise _bad(f"{param}.tool_call_id is required.", f"{param}.tool_call_id")
    content = msg.get("content")
    block: dict = {"type": "tool_result", "tool_use_id": str(msg["tool_call_id"])}
    if isinstance(content, list):
        block["content"] = [b for b in _user_blocks(content, f"{param}.content")]
    else:
        block["content"] = "" if content is None else str(content)
    return block


def _turns(messages: list[dict]) -> tuple[list[str], list[dict]]:
    system: list[str] = []
    turns: list[dict] = []
    for i, msg in enumerate(messages):
        role, param = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(t for t in _text_of(msg.get("content"), f"{param}.content") if t)
            continue
        if role == "user":
            role, blocks = "user", _user_blocks(msg.get("content"), f"{param}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(msg, param)
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg, param)]
        else:
            raise _bad(f"{param}: role {role!r} is not supported by Anthropic models; use tools.",
                       f"{param}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:   # tool results come first in their user turn
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return system, turns


def _tools(body: dict) -> list[dict]:
    out = []
    for i, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise _bad(f"tools[{i}] must be a function tool with a name.", f"tools[{i}]")
        t: dict[str, Any] = {"name": str(fn["name"])}
        if fn.get("description"):
            t["description"] = str(fn["description"])
        schema = fn.get("parameters")
        t["input_schema"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        out.append(t)
    return out


def _tool_choice(choice: object, tools: list[dict]) -> dict | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        if choice.get("type") == "function" and isinstance(choice.get("function"), dict) \
                and choice["function"].get("name"):
            return {"type": "tool", "name": str(choice["function"]["name"])}
        if choice.get("type") == "allowed_tools" and isinstance(choice.get("allowed_tools"), dict):
            allowed = choice["allowed_tools"]
            names = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or []
                     if isinstance(t, dict)}
            tools[:] = [t for t in tools if t["name"] in names]
            return {"type": "any" if allowed.get("mode") == "required" else "auto"}
    raise _bad("'tool_choice' must be \"auto\", \"required\", \"none\" or "
               "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")


def _json_schema(rf: dict) -> dict | None:
    kind = rf.get("type")
    if kind == "json_object":
        return {"type": "object", "additionalProperties": True, "properties": {}}
    if kind == "json_schema":
        spec = rf.get("json_schema")
        spec = spec if isinstance(spec, dict) else {}
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    if kind in (None, "text"):
        return None
    raise _bad("'response_format.type' must be text, json_object or json_schema.", "response_format")


def _mark(block: dict, ttl: str) -> None:
    block["cache_control"] = {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def to_anthropic(body: dict, target: Target) -> tuple[dict, bool, str | None]:
    """(Messages API body, json mode?, cache ttl or None)."""
    if (body.get("n") or 1) > 1:
        raise _bad("'n' greater than 1 is not supported by Anthropic models.", "n")
    ttl = cache_ttl(body.get("cache"))
    system, turns = _turns(body.get("messages") or [])
    spec = getattr(target, "spec", None)
    out: dict = {"model": target.upstream_id,
                 "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")
                 or getattr(spec, "max_output_tokens", None) or DEFAULT_MAX_TOKENS}
    if system:
        if ttl:
            out["system"] = [{"type": "text", "text": t} for t in system]
            _mark(out["system"][-1], ttl)
        else:
            out["system"] = "\n\n".join(system)
    out["messages"] = turns
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s.strip()]
    if stops:
        out["stop_sequences"] = stops
    t = body.get("temperature")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        out["temperature"] = min(1.0, max(0.0, float(t)))
    if isinstance(body.get("top_p"), (int, float)) and not isinstance(body.get("top_p"), bool):
        out["top_p"] = body["top_p"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user and not _EMAIL_OR_PHONE.search(user):
        out["metadata"] = {"user_id": user[:256]}

    tools = _tools(body)
    choice = _tool_choice(body.get("tool_choice"), tools) if tools else None
    rf = body.get("response_format")
    schema = _json_schema(rf) if isinstance(rf, dict) else None
    if schema is not None:
        forced = choice if choice and choice["type"] == "tool" else None
        tools.append({"name": JSON_TOOL, "description": "Respond with a JSON object that is the answer.",
                      "input_schema": schema})
        choice = forced or ({"type": "any"} if len(tools) > 1 else {"type": "tool", "name": JSON_TOOL})
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        out["tools"] = tools
        if choice:
            out["tool_choice"] = choice
    if ttl:
        if tools:
            _mark(tools[-1], ttl)
        for turn in reversed(turns):
            if turn["role"] == "user":
                _mark(turn["content"][-1], ttl)
                break
    for turn in turns:   # a lone plain text block is sent as a string
        c = turn["content"]
        if len(c) == 1 and c[0]["type"] == "text" and "cache_control" not in c[0]:
            turn["content"] = c[0]["text"]
    if body.get("stream"):
        out["stream"] = True
    return out, schema is not None, ttl


# ---------------------------------------------------------------------------- response
def finish_reason(stop_reason: str | None, json_only: bool = False) -> str:
    reason = FINISH.get(stop_reason or "", "stop")
    return "stop" if json_only and reason == "tool_calls" else reason


def _n(v: object) -> int:
    n = token_count(v)
    return 0 if n is None else n


def openai_usage(u: dict | None, ttl: str | None = None) -> dict:
    """Anthropic usage in OpenAI's meaning (docs/billing.md, "Usage a provider reports"). Counts follow the gateway's rule
    (domain/usage.py): an `input_tokens` or `output_tokens` that is not a count gives null
    `prompt_tokens` / `completion_tokens`, so the usage is incomplete and the estimator bills
    what it lacks; cache counts that are not counts read as 0; fractions round up."""
    u = u if isinstance(u, dict) else {}
    inp, out = token_count(u.get("input_tokens")), token_count(u.get("output_tokens"))
    read, write = _n(u.get("cache_read_input_tokens")), _n(u.get("cache_creation_input_tokens"))
    split = u.get("cache_creation")
    if isinstance(split, dict):
        write_1h = min(write, _n(split.get("ephemeral_1h_input_tokens")))
    else:   # no breakdown: the writes have the TTL the request asked for
        write_1h = write if ttl == "1h" else 0
    prompt = None if inp is None else inp + read + write
    total = None if prompt is None or out is None else prompt + out
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write,
                                      "cache_write_1h_tokens": write_1h}}


def to_openai(data: dict, json_mode: bool, ttl: str | None = None) -> dict:
    texts, calls, json_text = [], [], None
    for block in data.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            if json_mode and block.get("name") == JSON_TOOL and json_text is None:
                json_text = orjson.dumps(block.get("input") or {}).decode()
                continue
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    content = json_text if json_text is not None else ("".join(texts) if texts else None)
    message: dict = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    out = {"id": data.get("id") or "msg", "object": "chat.completion", "created": int(time.time()),
           "model": data.get("model"),
           "choices": [{"index": 0, "message": message, "logprobs": None,
                        "finish_reason": finish_reason(data.get("stop_reason"), json_mode and not calls)}]}
    if data.get("usage") is not None:
        out["usage"] = openai_usage(data["usage"], ttl)
    return out
