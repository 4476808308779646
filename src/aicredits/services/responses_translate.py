"""OpenAI Responses <-> Chat Completions, pure functions (no I/O).

Request side: validate a /v1/responses body (with the checks of services/validation.py); see
it as chat messages for the prompt bound; translate it into a chat body for providers that only
speak chat. Response side: a chat.completion as a Response object, and usage in the Responses
shape. The streaming side (chat chunks -> Responses events) is in responses_stream.py.
"""

from __future__ import annotations

import time
from os import urandom

from aicredits.domain.pricing import TokenUsage
from aicredits.errors import InvalidRequest
from aicredits.services.validation import (
    check_counts,
    content_field,
    number_field,
    object_item,
    request_body,
    typed_fields,
    whole_number,
)

# fields the gateway itself reads; never sent upstream on the native path
GATEWAY_FIELDS = ("models", "no_cache", "cache")
# unsupported on the translated path: they need state the gateway does not keep
STATEFUL = ("previous_response_id", "conversation", "prompt")
CHAT_PASS = ("temperature", "top_p", "user", "models", "no_cache", "cache", "seed", "stop")
# tools the client runs itself; hosted tools (web/file search, code interpreter, image generation,
# computer use, MCP) carry fees the catalog does not price, so they are refused rather than served free
CLIENT_TOOLS = ("function", "custom")


def new_id(prefix: str) -> str:
    return f"{prefix}_{urandom(16).hex()}"


def validate_responses(body: object) -> dict:
    """Shape checks shared by both paths, so bad input is a 400 naming the field."""
    body = request_body(body)
    inp = body.get("input")
    if inp is None:
        raise InvalidRequest("'input' is required: a string or an array of input items.", param="input")
    if isinstance(inp, list):
        if not inp:
            raise InvalidRequest("'input' must not be an empty array.", param="input")
        check_counts(inp, "input items", "input")
        for i, item in enumerate(inp):
            object_item(item, f"input[{i}]")
    elif not isinstance(inp, str):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    typed_fields(body, ("instructions", (str, list), "a string"), ("stream", bool, "a boolean"),
                 ("tools", list, "an array"), ("text", dict, "an object"), ("metadata", dict, "an object"),
                 ("parallel_tool_calls", bool, "a boolean"))
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(f"tools[{i}] must be an object with a 'type'.", param=f"tools[{i}]")
    whole_number(body, "max_output_tokens")
    mot = body.get("max_output_tokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool) or mot < 1):
        raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
    typed_fields(body, ("tool_choice", (str, dict), "a string or an object"))
    number_field(body, "temperature")
    number_field(body, "top_p")
    return body


def unbounded_prompt(body: dict) -> bool:
    """True when the prompt holds context the request does not carry (a stored response or
    conversation, a stored prompt): its size bounds nothing, so the hold takes the whole context
    window. (Files and item references in `input` are read with the rest of the prompt.)"""
    return any(body.get(k) for k in STATEFUL)


def check_native(body: dict) -> None:
    """What the native path refuses: unpriced hosted tools, and background responses (their usage
    would arrive after this call has settled)."""
    for i, tool in enumerate(body.get("tools") or ()):
        if tool["type"] not in CLIENT_TOOLS:
            raise InvalidRequest(f"tools[{i}]: hosted tools of type {tool['type']!r} are not available through "
                                 "this gateway (their fees are not priced); use function tools.",
                                 param=f"tools[{i}]")
    if body.get("background"):
        raise InvalidRequest("'background' responses are not available through this gateway.", param="background")


def as_chat_view(body: dict) -> dict:
    """The request as prompt_token_bound / estimate_prompt_tokens read a chat body: every input
    item counts as a message (all its strings; images, files and audio bounded per part), plus
    tools and the text format."""
    inp = body.get("input")
    messages: list = [{"role": "user", "content": inp}] if isinstance(inp, str) else list(inp or ())
    if body.get("instructions") is not None:
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    return {"messages": messages, "tools": body.get("tools"), "response_format": body.get("text"),
            "tool_choice": body.get("tool_choice")}


# ---------------------------------------------------------------------- request: Responses -> chat
def _part(part: object, where: str) -> dict:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    part = object_item(part, where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{where}.text must be a string.", param=where)
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{where}: only images given by 'image_url' (an http(s) or data: URL) can be "
                                 "sent to this model.", param=where)
        image = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        return {"type": "input_audio", "input_audio": part["input_audio"]}
    if kind == "input_file":
        f = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        if not f:
            raise InvalidRequest(f"{where}: an input_file needs file_data or file_id.", param=where)
        return {"type": "file", "file": f}
    raise InvalidRequest(f"{where}: content of type {kind!r} is not supported for this model.", param=where)


def _content(content: object, role: str, where: str) -> str | list[dict]:
    content = content_field(content, where)
    if isinstance(content, str):
        return content
    parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if role in ("assistant", "system", "developer"):
        if any(p["type"] != "text" for p in parts):
            raise InvalidRequest(f"{where}: {role} messages may hold text only.", param=f"{where}.content")
        return "".join(p["text"] for p in parts)
    return parts


def _tool_output(output: object) -> object:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [_part(p, "function_call_output.output") for p in output]
        if all(p["type"] == "text" for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    return "" if output is None else str(output)


def _messages(body: dict) -> list[dict]:
    out: list[dict] = []
    instr = body.get("instructions")
    if isinstance(instr, str) and instr:
        out.append({"role": "system", "content": instr})
    inp = body["input"]
    prefix = [x for x in instr if isinstance(x, dict)] if isinstance(instr, list) else []
    items = prefix + ([{"role": "user", "content": inp}] if isinstance(inp, str) else inp)
    for i, item in enumerate(items):
        where = f"instructions[{i}]" if i < len(prefix) else f"input[{i - len(prefix)}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"{where}.role must be user, assistant, system or developer.",
                                     param=f"{where}.role")
            out.append({"role": role, "content": _content(item.get("content"), role, where)})
        elif kind == "function_call":
            name, args = item.get("name"), item.get("arguments")
            if not isinstance(name, str) or not isinstance(args, str):
                raise InvalidRequest(f"{where}: a function_call needs 'name' and 'arguments' strings.", param=where)
            call = {"id": item.get("call_id") or item.get("id") or new_id("call"), "type": "function",
                    "function": {"name": name, "arguments": args}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":   # parallel calls: one assistant turn
                last.setdefault("tool_calls", []).append(call)
                if not last.get("content"):
                    last["content"] = None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise InvalidRequest(f"{where}: a function_call_output needs a 'call_id'.", param=where)
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _tool_output(item.get("output"))})
        elif kind == "reasoning":
            continue   # another model's reasoning: nothing a chat model can take
        else:
            raise InvalidRequest(f"{where}: input items of type {kind!r} are not supported for this model.",
                                 param=where)
    return out


def _tools(tools: list) -> list[dict]:
    out = []
    for i, t in enumerate(tools):
        if t.get("type") != "function" or not isinstance(t.get("name"), str):
            raise InvalidRequest(f"tools[{i}]: only function tools ({{type: 'function', name, parameters}}) are "
                                 f"supported for this model, not {t.get('type')!r}.", param=f"tools[{i}]")
        fn = {"name": t["name"]}
        for k in ("description", "parameters", "strict"):
            if t.get(k) is not None:
                fn[k] = t[k]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(tc: object) -> object:
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            raise InvalidRequest("'tool_choice' must be none, auto, required or a function.", param="tool_choice")
        return tc
    if isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("name"), str):
        return {"type": "function", "function": {"name": tc["name"]}}
    raise InvalidRequest("'tool_choice' of this kind is not supported for this model.", param="tool_choice")


def _response_format(text: dict) -> dict | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest("'text.format.type' must be text, json_object or json_schema.", param="text.format")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
    schema.setdefault("name", "response")
    return {"type": "json_schema", "json_schema": schema}


def responses_to_chat(body: dict) -> dict:
    """A validated Responses request as a chat completions request."""
    for name in STATEFUL:
        if body.get(name):
            raise InvalidRequest(f"'{name}' is not supported for this model: the gateway keeps no responses; "
                                 "send the whole conversation in 'input'.", param=name)
    if body.get("background"):
        raise InvalidRequest("'background' is not supported for this model.", param="background")
    chat: dict = {"model": body["model"], "messages": _messages(body)}
    if not chat["messages"]:
        raise InvalidRequest("'input' holds nothing this model can read.", param="input")
    for k in CHAT_PASS:
        if body.get(k) is not None:
            chat[k] = body[k]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    rf = _response_format(body.get("text") or {})
    if rf is not None:
        chat["response_format"] = rf
    if body.get("stream"):
        chat["stream"] = True
    return chat


# ---------------------------------------------------------------------- response: chat -> Responses
def usage_block(u: TokenUsage) -> dict:
    """A TokenUsage in the Responses shape."""
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": u.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def status_of(finish: str | None) -> tuple[str, dict | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_shell(body: dict, resp_id: str, created: int | None = None, status: str = "in_progress") -> dict:
    """The Response object's fields that echo the request."""
    return {
        "id": resp_id, "object": "response", "created_at": created or int(time.time()), "status": status,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": False,
        "temperature": body.get("temperature"), "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [],
        "top_p": body.get("top_p"), "truncation": "disabled", "usage": None, "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def message_item(item_id: str, parts: list[dict], status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": parts}


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def chat_to_response(data: dict, body: dict, usage: TokenUsage) -> dict:
    """A chat.completion (first choice) as a Response; `usage` is the TokenUsage billed."""
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    status, details = status_of(choice.get("finish_reason"))
    out = []
    parts = []
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content:
        parts.append(text_part(content))
    if msg.get("refusal"):
        parts.append({"type": "refusal", "refusal": msg["refusal"]})
    calls = [c for c in msg.get("tool_calls") or () if isinstance(c, dict)]
    if parts or not calls:
        out.append(message_item(new_id("msg"), parts or [text_part("")],
                                "incomplete" if status == "incomplete" else "completed"))
    for c in calls:
        fn = c.get("function") or {}
        out.append(call_item(new_id("fc"), c.get("id") or new_id("call"), fn.get("name") or "",
                             fn.get("arguments") or ""))
    resp = response_shell(body, new_id("resp"), data.get("created"), status)
    resp.update(output=out, incomplete_details=details, usage=usage_block(usage))
    return resp
