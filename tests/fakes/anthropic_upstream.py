"""A fake Anthropic upstream for the aicredits test suite.

A *real* HTTP server (aiohttp.web) bound to 127.0.0.1 on a free port, in a background thread with its own
event loop, speaking Anthropic's Messages API as its docs describe it:

* ``POST /v1/messages`` - JSON or SSE (``event: <name>`` + ``data: <json>`` frames whose JSON repeats the type:
  ``message_start``, ``content_block_start/delta/stop``, ``ping``, ``message_delta``, ``message_stop``; no
  ``[DONE]``), thinking / text / tool_use blocks, cache usage (``cache_creation_input_tokens``,
  ``cache_read_input_tokens``, ``cache_creation`` {``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``}).
* ``GET /v1/models`` - a model list.
* anything else - 404 with Anthropic's error body ``{"type":"error","error":{"type","message"},"request_id"}``.

Auth: ``x-api-key: <key>`` (SDK <= 1.x, the gateway) OR ``Authorization: Bearer <key>`` (SDK >= 2). Versions
``2023-06-01`` and ``2026-10-21`` (the latter rejects ``temperature``/``top_p``/``top_k`` with 400, as the API does).
Requests are validated the way the API does (unknown top-level fields, roles, block types, empty text blocks,
tool_use/tool_result pairing, at most 4 cache_control breakpoints, tool_choice needing tools ...): a 400 here
means the real API would have refused the body too. Failed auth/validation does not consume a scenario.

Every answer to a valid ``/v1/messages`` request is driven by the next queued :class:`Scenario` (FIFO; a default
``Scenario()`` when the queue is empty). Every request is recorded in :attr:`FakeAnthropic.requests`.

    fake = FakeAnthropic().start()      # fake.base_url has no /v1, like ANTHROPIC_BASE_URL
    fake.enqueue(Scenario(text="Hi", output_tokens=2))
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

__all__ = ["ERROR_TYPES", "FakeAnthropic", "Recorded", "Scenario", "org_rate_limit_message", "split_text"]

VERSIONS = ("2023-06-01", "2026-10-21")
SAMPLING = ("temperature", "top_p", "top_k")
TOP_LEVEL = {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p", "top_k",
             "stream", "metadata", "tools", "tool_choice", "thinking", "output_config", "service_tier",
             "cache_control", "container", "mcp_servers", "context_management"}
BLOCKS = {"user": {"text", "image", "document", "tool_result", "search_result"},
          "assistant": {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"}}
MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


@dataclass
class Scenario:
    """What the fake does for the next /v1/messages request."""

    text: str = "Hello from the fake Anthropic upstream."  # "" -> no text block
    thinking: str | None = None  # a thinking block (with a signature) before the text
    tool_uses: list[dict] | None = None  # [{"id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    stop_reason: str | None = None  # default: "tool_use" with tool_uses, else "end_turn"
    stop_sequence: str | None = None  # the matched sequence (stop_reason "stop_sequence")
    # uncached input (excludes cache reads and writes); sent as given, so None or a float makes odd usage
    input_tokens: int | float | None = 21
    output_tokens: int | float | None = 9  # message_delta's count (message_start always says 1)
    cache_read: int = 0  # cache_read_input_tokens
    cache_write_5m: int = 0  # cache_creation.ephemeral_5m_input_tokens
    cache_write_1h: int = 0  # cache_creation.ephemeral_1h_input_tokens
    omit_cache_creation: bool = False  # usage without the cache_creation breakdown (older API)
    status: int = 200  # != 200: Anthropic's error body is the whole answer
    error_type: str | None = None  # default from the status (ERROR_TYPES); also the mid-stream error's type
    error_message: str = "The fake Anthropic upstream failed."
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers, e.g. {"retry-after": "7"}
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0  # seconds between stream events
    pings: int = 1  # ping events (after the first content_block_start, as the API does)
    cut_after: int | None = None  # stream: abort the TCP connection after this many content_block_delta events
    error_after: int | None = None  # stream: after this many deltas send `event: error` and end
    omit_stop: bool = False  # stream: message_delta but no message_stop, then a clean end
    hang: bool = False  # never answer (until the client goes away / stop())
    drip: float | None = None  # non-stream: the 200 head, then the body one byte every `drip` seconds


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None
    raw: bytes


def org_rate_limit_message(org: str) -> str:
    """Anthropic's 429 message, which names the operator's organization id (a UUID)."""
    return (f"This request would exceed the rate limit for your organization ({org}) of 50,000 input tokens per "
            "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
            "headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try "
            "again later.")


def split_text(text: str) -> list[str]:
    """The text deltas the fake streams (joined they give ``text``)."""
    return re.findall(r"\S+\s*|\s+", text)


def _fragments(s: str) -> list[str]:
    size = max(1, -(-len(s) // 3))
    return [s[i : i + size] for i in range(0, len(s), size)] or [""]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Invalid(Exception):
    pass


class _ClientGone(Exception):
    pass


class FakeAnthropic:
    def __init__(self, api_key: str = "sk-ant-fake-upstream-key-0123456789") -> None:
        self.api_key = api_key
        self.port = 0
        self.base_url = ""
        self.requests: list[Recorded] = []
        self.disconnects: list[str] = []
        self._queue: collections.deque[Scenario] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._stopping = False
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        ready.wait()
        self.port = asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def _astart(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        return runner.addresses[0][1]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        loop = self._loop

        async def astop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(astop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test-facing API
    def enqueue(self, *scenarios: Scenario) -> None:
        with self._lock:
            self._queue.extend(scenarios)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def message_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == "/v1/messages"]

    def last_body(self) -> dict:
        return self.message_requests()[-1].body

    # ------------------------------------------------------------------ plumbing
    def _next(self) -> Scenario:
        with self._lock:
            return self._queue.popleft() if self._queue else Scenario()

    @staticmethod
    def _error(status: int, message: str, type_: str | None = None, headers: dict | None = None) -> web.Response:
        rid = f"req_fake{int(time.time() * 1000)}"
        body = {"type": "error", "error": {"type": type_ or ERROR_TYPES.get(status, "api_error"), "message": message},
                "request_id": rid}
        return web.Response(status=status, text=_dumps(body), content_type="application/json",
                            headers={"request-id": rid, **(headers or {})})

    def _check(self, request: web.Request) -> None:
        t = request.transport
        if self._stopping or t is None or t.is_closing():
            if t is not None and self._stopping:
                t.abort()
            raise _ClientGone()

    async def _sleep(self, request: web.Request, seconds: float | None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            self._check(request)
            left = 0.05 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        rec = Recorded(request.method, request.path, {k.lower(): v for k, v in request.headers.items()},
                       parsed if isinstance(parsed, dict) else None, raw)
        with self._lock:
            self.requests.append(rec)
        path = request.path.rstrip("/")
        if (request.method, path) not in (("POST", "/v1/messages"), ("GET", "/v1/models")):
            return self._error(404, f"Not found: {request.method} {request.path}")
        key, bearer = rec.headers.get("x-api-key"), rec.headers.get("authorization", "")
        if key is None and not bearer:
            return self._error(401, "x-api-key header is required")
        if key != self.api_key and bearer != f"Bearer {self.api_key}":
            return self._error(401, "invalid x-api-key")
        version = rec.headers.get("anthropic-version")
        if version is None:
            return self._error(400, "anthropic-version: header is required")
        if version not in VERSIONS:
            return self._error(400, f"anthropic-version: invalid version '{version}'")
        if path == "/v1/models":
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                    for m in ("claude-sonnet-4-6", "claude-haiku-4-5")]
            return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"],
                                      "last_id": data[-1]["id"]}, dumps=_dumps)
        if rec.body is None:
            return self._error(400, "There was an error parsing the body of your request as JSON.")
        try:
            validate(rec.body, version)
        except _Invalid as exc:
            return self._error(400, str(exc))
        if not rec.body["model"].startswith("claude-"):
            return self._error(404, f"model: {rec.body['model']}")
        return await self._messages(request, rec.body, self._next())

    # ------------------------------------------------------------------ /v1/messages
    @staticmethod
    def _usage(s: Scenario, output: int) -> dict:
        u: dict[str, Any] = {"input_tokens": s.input_tokens,
                             "cache_creation_input_tokens": s.cache_write_5m + s.cache_write_1h,
                             "cache_read_input_tokens": s.cache_read}
        if not s.omit_cache_creation:
            u["cache_creation"] = {"ephemeral_5m_input_tokens": s.cache_write_5m,
                                   "ephemeral_1h_input_tokens": s.cache_write_1h}
        u["output_tokens"] = output
        u["service_tier"] = "standard"
        return u

    @staticmethod
    def _blocks(s: Scenario) -> list[dict]:
        blocks: list[dict] = []
        if s.thinking is not None:
            blocks.append({"type": "thinking", "thinking": s.thinking, "signature": "c2lnbmF0dXJl"})
        if s.text:
            blocks.append({"type": "text", "text": s.text})
        for tu in s.tool_uses or []:
            blocks.append({"type": "tool_use", "id": tu["id"], "name": tu["name"], "input": tu.get("input", {})})
        return blocks

    async def _messages(self, request: web.Request, body: dict, s: Scenario) -> web.StreamResponse:
        mid = f"msg_fake{next(self._ids):04d}"
        headers = {"request-id": f"req_{mid}", **s.headers}
        try:
            await self._sleep(request, s.first_byte_delay)
            if s.hang:
                await self._sleep(request, None)
            if s.status != 200:
                return self._error(s.status, s.error_message, s.error_type, headers)
            stop_reason = s.stop_reason or ("tool_use" if s.tool_uses else "end_turn")
            if body.get("stream"):
                return await self._stream(request, body, s, mid, headers, stop_reason)
            msg = {"id": mid, "type": "message", "role": "assistant", "model": body["model"],
                   "content": self._blocks(s), "stop_reason": stop_reason, "stop_sequence": s.stop_sequence,
                   "usage": self._usage(s, s.output_tokens)}
            if s.drip is None:
                return web.Response(text=_dumps(msg), content_type="application/json", headers=headers)
            raw = _dumps(msg).encode()
            resp = web.StreamResponse(status=200, headers={**headers, "content-type": "application/json",
                                                           "content-length": str(len(raw))})
            await resp.prepare(request)
            for i in range(len(raw)):
                self._check(request)
                await resp.write(raw[i:i + 1])
                await self._sleep(request, s.drip)
            await resp.write_eof()
            return resp
        except (_ClientGone, ConnectionError):
            with self._lock:
                self.disconnects.append(mid)
            return web.Response(status=499)

    async def _stream(self, request: web.Request, body: dict, s: Scenario, mid: str, headers: dict,
                      stop_reason: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        resp.headers["cache-control"] = "no-cache"
        await resp.prepare(request)
        first = True

        async def send(name: str, data: dict) -> None:
            nonlocal first
            if not first and s.chunk_delay:
                await self._sleep(request, s.chunk_delay)
            first = False
            self._check(request)
            await resp.write(f"event: {name}\ndata: {_dumps({'type': name, **data})}\n\n".encode())

        start = {"id": mid, "type": "message", "role": "assistant", "model": body["model"], "content": [],
                 "stop_reason": None, "stop_sequence": None, "usage": self._usage(s, 1)}
        await send("message_start", {"message": start})
        deltas = 0
        pings = s.pings
        for index, block in enumerate(self._blocks(s)):
            kind = block["type"]
            empty = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                     "text": {"type": "text", "text": ""},
                     "tool_use": {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}}
            await send("content_block_start", {"index": index, "content_block": empty[kind]})
            while pings > 0:
                pings -= 1
                await send("ping", {})
            if kind == "thinking":
                pieces = [{"type": "thinking_delta", "thinking": p} for p in split_text(block["thinking"])]
                pieces.append({"type": "signature_delta", "signature": block["signature"]})
            elif kind == "text":
                pieces = [{"type": "text_delta", "text": p} for p in split_text(block["text"])]
            else:
                pieces = [{"type": "input_json_delta", "partial_json": p}
                          for p in ["", *_fragments(_dumps(block["input"]))]]
            for delta in pieces:
                if s.cut_after is not None and deltas >= s.cut_after:
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if s.error_after is not None and deltas >= s.error_after:
                    await send("error", {"error": {"type": s.error_type or "overloaded_error",
                                                   "message": s.error_message}})
                    await resp.write_eof()
                    return resp
                await send("content_block_delta", {"index": index, "delta": delta})
                deltas += 1
            await send("content_block_stop", {"index": index})
        await send("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": s.stop_sequence},
                                     "usage": {"output_tokens": s.output_tokens}})
        if not s.omit_stop:
            await send("message_stop", {})
        await resp.write_eof()
        return resp


# ---------------------------------------------------------------------- request validation
def _fail(message: str) -> None:
    raise _Invalid(message)


def _cache_control(obj: dict, where: str) -> int:
    cc = obj.get("cache_control")
    if cc is None:
        return 0
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral" or set(cc) - {"type", "ttl"} \
            or cc.get("ttl", "5m") not in ("5m", "1h"):
        _fail(f"{where}.cache_control: Input should be {{'type': 'ephemeral', 'ttl'?: '5m' | '1h'}}")
    return 1


def _block(block: Any, role: str, where: str) -> int:
    if not isinstance(block, dict) or "type" not in block:
        _fail(f"{where}: Input should be a valid content block")
    kind = block["type"]
    if kind not in BLOCKS[role]:
        _fail(f"{where}.type: '{kind}' blocks are not permitted in {role} messages")
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        _fail(f"{where}: text content blocks must be non-empty")
    if kind == "image":
        src = block.get("source") or {}
        if src.get("type") == "base64":
            if src.get("media_type") not in MEDIA_TYPES or not isinstance(src.get("data"), str):
                _fail(f"{where}.source: invalid base64 image source")
        elif src.get("type") != "url" or not str(src.get("url", "")).startswith(("http://", "https://")):
            _fail(f"{where}.source: Input should be a base64 or url image source")
    if kind == "tool_use" and (not block.get("id") or not block.get("name")
                               or not isinstance(block.get("input"), dict)):
        _fail(f"{where}: tool_use blocks need id, name and an input object")
    if kind == "tool_result":
        if not block.get("tool_use_id"):
            _fail(f"{where}.tool_use_id: Field required")
        content = block.get("content", "")
        if isinstance(content, list):
            for j, inner in enumerate(content):
                _block(inner, "user", f"{where}.content.{j}")
        elif not isinstance(content, str):
            _fail(f"{where}.content: Input should be a string or a list of blocks")
    return _cache_control(block, where)


def validate(body: dict, version: str) -> None:
    """Raise _Invalid with the API's kind of message where the real API would answer 400."""
    for key in body:
        if key not in TOP_LEVEL:
            _fail(f"{key}: Extra inputs are not permitted")
    if version == "2026-10-21":
        for key in SAMPLING:
            if key in body:
                _fail(f"{key}: is not supported on anthropic-version {version}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        _fail("model: Field required")
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        _fail("max_tokens: Field required (an integer >= 1)")
    t = body.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or not 0 <= t <= 1):
        _fail("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or any(not isinstance(x, str) or not x.strip()
                                                                for x in stops)):
        _fail("stop_sequences: each stop sequence must be a string containing non-whitespace")
    md = body.get("metadata")
    if md is not None and (not isinstance(md, dict) or set(md) - {"user_id"}):
        _fail("metadata: only user_id is permitted")
    breakpoints = 0
    system = body.get("system")
    if isinstance(system, list):
        for i, b in enumerate(system):
            if not isinstance(b, dict) or b.get("type") != "text" or not b.get("text"):
                _fail(f"system.{i}: Input should be a non-empty text block")
            breakpoints += _cache_control(b, f"system.{i}")
    elif system is not None and not isinstance(system, str):
        _fail("system: Input should be a valid string or list of text blocks")
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            _fail("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not TOOL_NAME.match(str(tool.get("name", ""))):
                _fail(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            if set(tool) - {"name", "description", "input_schema", "cache_control", "type", "strict"}:
                _fail(f"tools.{i}: Extra inputs are not permitted")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                _fail(f"tools.{i}.input_schema: Input should be a JSON schema of type object")
            names.add(tool["name"])
            breakpoints += _cache_control(tool, f"tools.{i}")
    tc = body.get("tool_choice")
    if tc is not None:
        if not tools:
            _fail("tool_choice: may only be specified while providing tools")
        if not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "none", "tool"):
            _fail("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if tc["type"] == "tool" and tc.get("name") not in names:
            _fail(f"tool_choice.name: no tool named {tc.get('name')!r}")
        if tc["type"] == "none" and "disable_parallel_tool_use" in tc:
            _fail("tool_choice.disable_parallel_tool_use: Extra inputs are not permitted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail("messages: Field required (a non-empty list)")
    pending: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(msg, dict) or set(msg) - {"role", "content"}:
            _fail(f"{where}: Extra inputs are not permitted")
        role = msg.get("role")
        if role not in BLOCKS:
            _fail(f"{where}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, str):
            blocks: list = [{"type": "text", "text": content}] if content else []
            if not content and not (role == "assistant" and i == len(messages) - 1):
                _fail(f"{where}: all messages must have non-empty content")
        elif isinstance(content, list) and content:
            blocks = content
            for j, b in enumerate(blocks):
                breakpoints += _block(b, role, f"{where}.content.{j}")
        else:
            _fail(f"{where}.content: Input should be a string or a non-empty list of blocks")
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if role == "user":
            if any(b.get("type") == "tool_result" for b in blocks[len(results):]):
                _fail(f"{where}: tool_result blocks must come before any other content")
            unknown = set(results) - pending
            if unknown:
                _fail(f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {min(unknown)}. "
                      "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
            if pending - set(results):
                _fail(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                      f"after: {min(pending - set(results))}")
            pending = set()
        else:
            if pending:
                _fail(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after")
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    if breakpoints > 4:
        _fail(f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}.")
