"""A fake OpenAI upstream for the aicredits test suite.

A *real* HTTP server (aiohttp.web) bound to 127.0.0.1 on a free port, running in a background thread with its
own event loop, speaking OpenAI's wire protocol (see /work/shared/research/protocols.md §1 and §3):

* ``POST /v1/chat/completions`` - JSON or SSE (``data: <json>\\n\\n`` frames, no ``event:`` lines, role chunk,
  content / tool-call deltas, finish chunk with an empty delta, a usage chunk with ``"choices":[]`` only when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``).
* ``POST /v1/embeddings`` - ``float`` or ``base64`` (little-endian float32) vectors.
* ``GET /v1/models`` - a model list.
* ``POST /v1/images/generations``, ``/v1/audio/speech``, ``/v1/audio/transcriptions`` - see
  :mod:`tests.fakes.openai_media`.
* anything else - 404 with OpenAI's error body.

Every answer to a chat/embeddings request is driven by the next queued :class:`Scenario` (FIFO; default
``Scenario()`` when the queue is empty). Requests that fail authentication (401) or validation (400) do not take a
scenario from the queue. Every request (whatever its outcome) is recorded in :attr:`FakeOpenAI.requests`.

Usage::

    fake = FakeOpenAI().start()
    fake.enqueue(Scenario(content="Hi there", completion_tokens=2))
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    ...
    fake.stop()
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import itertools
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.fakes import openai_media as _media  # /v1/images/generations, /v1/audio/* routes

__all__ = ["MODELS", "FakeOpenAI", "Recorded", "Scenario", "embedding_vector", "split_content"]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large")
EMBEDDING_DIMENSIONS = 3
SYSTEM_FINGERPRINT = "fp_fake0001"


@dataclass
class Scenario:
    """What the fake does for the next chat completions / embeddings request."""

    content: str = "Hello from the fake upstream."
    prompt_tokens: int = 19
    completion_tokens: int = 9
    cached_tokens: int = 0  # usage.prompt_tokens_details.cached_tokens (included in prompt_tokens)
    reasoning_tokens: int = (
        0  # usage.completion_tokens_details.reasoning_tokens (included in completion_tokens)
    )
    # [{"id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]; implies content None and
    # finish_reason "tool_calls"; each call's arguments are streamed in >= 2 fragments.
    tool_calls: list[dict] | None = None
    finish_reason: str | None = None  # override ("length", "content_filter", ...)
    status: int = 200  # != 200: the error JSON body is the whole answer
    error_type: str = "server_error"
    error_message: str = "The fake upstream failed."
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers, e.g. {"retry-after": "7"}
    first_byte_delay: float = 0.0  # seconds before anything (status line included) is sent
    chunk_delay: float = 0.0  # seconds between stream events
    cut_after: int | None = None  # stream: abort the TCP connection after this many delta events
    error_after: int | None = None  # stream: after this many delta events send data: {"error": ...} and end
    omit_usage: bool = False  # stream: never send the usage chunk; non-stream: no "usage" key
    omit_done: bool = False  # stream: finish (+ usage if asked) but no [DONE], response ends cleanly
    hang: bool = False  # accept the request and never answer (until the client goes away / stop())
    error_code: str | None = None  # "code" in the error body (status != 200 and error_after)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None  # parsed JSON object, else None
    raw: bytes
    query: dict[str, str] = field(default_factory=dict)


def split_content(content: str) -> list[str]:
    """The content deltas the fake streams for ``content`` (word-ish pieces; joined they give ``content``)."""
    return re.findall(r"\S+\s*|\s+", content)


def _split_arguments(arguments: str) -> list[str]:
    """At least two fragments whenever ``len(arguments) >= 2``."""
    if len(arguments) < 2:
        return [arguments]
    size = max(1, -(-len(arguments) // 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def embedding_vector(item: Any, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """Deterministic vector for one embeddings input item (a string or a list of token ids).

    Components are multiples of 1/256 in [-0.5, 0.5), exactly representable as float32, so float and base64
    encodings decode to identical values.
    """
    digest = hashlib.sha256(json.dumps(item, separators=(",", ":")).encode()).digest()
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest).digest()
    return [(digest[i] - 128) / 256 for i in range(dimensions)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _ClientGone(Exception):
    """The client closed the connection."""


class _ServerStopping(_ClientGone):
    """stop() was called: the connection has been aborted (not a client disconnect)."""


class FakeOpenAI:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (see module docstring)."""

    def __init__(self, api_key: str = "sk-fake-upstream-key"):
        self.api_key = api_key
        self.port: int = 0
        self.base_url: str = ""
        self.requests: list[Recorded] = []
        self.disconnects: list[str] = []
        self._queue: collections.deque[Scenario] = collections.deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._disconnects_seen = 0
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._stopping = False
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop, ready), name="fake-openai", daemon=True
        )
        self._thread.start()
        ready.wait()
        fut = asyncio.run_coroutine_threadsafe(self._astart(), loop)
        self.port = fut.result(timeout=10)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    async def _astart(self) -> int:
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        return runner.addresses[0][1]

    async def _astop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._thread = None
            self._loop = None

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
            self._disconnects_seen = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def pending(self) -> int:
        """Scenarios still queued."""
        with self._lock:
            return len(self._queue)

    def wait_disconnect(self, timeout: float = 5.0) -> bool:
        """Wait until a disconnect not yet reported by a previous call is recorded; True if one was."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.disconnects) > self._disconnects_seen, timeout=timeout)
            if ok:
                self._disconnects_seen = len(self.disconnects)
            return ok

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # ------------------------------------------------------------------ internals
    def _next_scenario(self) -> Scenario:
        with self._lock:
            return self._queue.popleft() if self._queue else Scenario()

    def _record_disconnect(self, rid: str) -> None:
        if self._stopping:
            return
        with self._cond:
            self.disconnects.append(rid)
            self._cond.notify_all()

    def _adjust_in_flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta

    @staticmethod
    def _client_gone(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _sleep(self, request: web.Request, seconds: float | None) -> None:
        """Sleep, noticing a client that goes away meanwhile."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            self._check(request)
            left = 0.05 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _hang(self, request: web.Request) -> None:
        await self._sleep(request, None)

    def _check(self, request: web.Request) -> None:
        """Raise _ClientGone if the client went away; drop the connection if the server is stopping."""
        if self._stop_event is not None and self._stop_event.is_set():
            if request.transport is not None:
                request.transport.abort()
            raise _ServerStopping()
        if self._client_gone(request):
            raise _ClientGone()

    @staticmethod
    def _base_headers(rid: str, scenario: Scenario | None = None) -> dict[str, str]:
        headers = {"x-request-id": f"req_{rid}", "openai-processing-ms": "1", "openai-version": "2020-10-01"}
        if scenario is not None:
            headers.update(scenario.headers)
        return headers

    def _error(self, status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, text=_dumps(body), content_type="application/json", headers=headers or {}
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict | None = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        rec = Recorded(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            query=dict(request.query),
        )
        with self._lock:
            self.requests.append(rec)

        path = request.path.rstrip("/")
        route = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): lambda req, rec: _responses(self, req, rec),
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/images/generations"): lambda req, rec: _media.images(self, req, rec),
            ("POST", "/v1/audio/speech"): lambda req, rec: _media.speech(self, req, rec),
            ("POST", "/v1/audio/transcriptions"): lambda req, rec: _media.transcriptions(self, req, rec),
        }.get((request.method, path))
        if route is None:
            return self._error(
                404,
                _error_body(f"Invalid URL ({request.method} {request.path})", "invalid_request_error"),
            )
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            given = auth[7:] if auth.startswith("Bearer ") else ""
            if given:
                msg = (
                    f"Incorrect API key provided: {given[:3]}***{given[-4:]}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
            else:
                msg = (
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
            return self._error(
                401, _error_body(msg, "invalid_request_error", None, "invalid_api_key" if given else None)
            )
        return await route(request, rec)

    # ------------------------------------------------------------------ /v1/models
    async def _models(self, request: web.Request, rec: Recorded) -> web.Response:
        data = [{"id": m, "object": "model", "created": 1686935002, "owned_by": "openai"} for m in MODELS]
        return web.json_response({"object": "list", "data": data}, dumps=_dumps)

    # ------------------------------------------------------------------ shared validation
    def _invalid(self, body: dict | None, rec: Recorded, required: tuple[str, ...]) -> web.Response | None:
        if body is None:
            if not rec.raw:
                msg = "We could not parse the JSON body of your request: the body is empty."
            else:
                msg = (
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                    "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
                )
            return self._error(400, _error_body(msg, "invalid_request_error"))
        for key in required:
            if key not in body:
                return self._error(
                    400,
                    _error_body(
                        f"Missing required parameter: '{key}'.",
                        "invalid_request_error",
                        key,
                        "missing_required_parameter",
                    ),
                )
        if "messages" in required and not isinstance(body["messages"], list):
            return self._error(
                400,
                _error_body(
                    "Invalid type for 'messages': expected an array.",
                    "invalid_request_error",
                    "messages",
                    "invalid_type",
                ),
            )
        if not isinstance(body["model"], str):
            return self._error(
                400,
                _error_body(
                    "Invalid type for 'model': expected a string.",
                    "invalid_request_error",
                    "model",
                    "invalid_type",
                ),
            )
        return None

    def _scenario_error(self, scenario: Scenario, rid: str) -> web.Response:
        return self._error(
            scenario.status,
            _error_body(scenario.error_message, scenario.error_type, None, scenario.error_code),
            self._base_headers(rid, scenario),
        )

    # ------------------------------------------------------------------ /v1/chat/completions
    @staticmethod
    def _usage(s: Scenario) -> dict:
        return {
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "total_tokens": s.prompt_tokens + s.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": s.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": s.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    async def _chat(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.body
        invalid = self._invalid(body, rec, ("model", "messages"))
        if invalid is not None:
            return invalid
        assert body is not None
        scenario = self._next_scenario()
        rid = f"chatcmpl-{next(self._ids)}"
        state = {"cut": False, "resp": None}
        self._adjust_in_flight(1)
        try:
            await self._sleep(request, scenario.first_byte_delay)
            if scenario.hang:
                await self._hang(request)
            if scenario.status != 200:
                return self._scenario_error(scenario, rid)
            if body.get("stream"):
                return await self._chat_stream(request, body, scenario, rid, state)
            return self._chat_json(body, scenario, rid)
        except asyncio.CancelledError:
            if not state["cut"]:
                self._record_disconnect(rid)
            raise
        except (_ClientGone, ConnectionError):
            if not state["cut"]:
                self._record_disconnect(rid)
            resp = state["resp"]
            if resp is None:
                resp = web.Response(status=499)
            return resp
        finally:
            self._adjust_in_flight(-1)

    def _chat_json(self, body: dict, s: Scenario, rid: str) -> web.Response:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": s.content,
            "refusal": None,
            "annotations": [],
        }
        finish = "stop"
        if s.tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": tc["id"],
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": tc.get("arguments", "")},
                }
                for tc in s.tool_calls
            ]
            finish = "tool_calls"
        payload: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "service_tier": "default",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": s.finish_reason or finish}
            ],
        }
        if not s.omit_usage:
            payload["usage"] = self._usage(s)
        return web.Response(
            text=_dumps(payload), content_type="application/json", headers=self._base_headers(rid, s)
        )

    @staticmethod
    def _chat_deltas(s: Scenario) -> tuple[dict, list[dict], str]:
        """(role delta, subsequent deltas, default finish reason)."""
        if s.tool_calls:
            role: dict[str, Any] = {"role": "assistant", "content": None}
            deltas: list[dict] = []
            for index, tc in enumerate(s.tool_calls):
                head = {
                    "index": index,
                    "id": tc["id"],
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": ""},
                }
                if index == 0:
                    role["tool_calls"] = [head]
                else:
                    deltas.append({"tool_calls": [head]})
                for frag in _split_arguments(tc.get("arguments", "")):
                    deltas.append({"tool_calls": [{"index": index, "function": {"arguments": frag}}]})
            role["refusal"] = None
            return role, deltas, "tool_calls"
        role = {"role": "assistant", "content": "", "refusal": None}
        return role, [{"content": piece} for piece in split_content(s.content)], "stop"

    async def _chat_stream(
        self, request: web.Request, body: dict, s: Scenario, rid: str, state: dict
    ) -> web.StreamResponse:
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        created = int(time.time())
        model = body["model"]

        def chunk(choices: list, **extra: Any) -> bytes:
            obj = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
                **extra,
            }
            return f"data: {_dumps(obj)}\n\n".encode()

        def choice(delta: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        resp = web.StreamResponse(status=200, headers=self._base_headers(rid, s))
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        resp.headers["cache-control"] = "no-cache"
        state["resp"] = resp
        await resp.prepare(request)

        first = True

        async def send(data: bytes) -> None:
            nonlocal first
            if not first and s.chunk_delay:
                await self._sleep(request, s.chunk_delay)
            first = False
            self._check(request)
            await resp.write(data)

        role, deltas, default_finish = self._chat_deltas(s)
        await send(chunk(choice(role)))
        for n, delta in enumerate(deltas):
            if s.cut_after is not None and n >= s.cut_after:
                break
            if s.error_after is not None and n >= s.error_after:
                break
            await send(chunk(choice(delta)))
        else:
            n = len(deltas)
        sent = n
        if s.cut_after is not None and sent >= s.cut_after:
            state["cut"] = True
            if request.transport is not None:
                request.transport.abort()
            return resp
        if s.error_after is not None and sent >= s.error_after:
            err = _error_body(s.error_message, s.error_type, None, s.error_code)
            await send(f"data: {_dumps(err)}\n\n".encode())
            await resp.write_eof()
            return resp
        await send(chunk(choice({}, s.finish_reason or default_finish)))
        if include_usage and not s.omit_usage:
            await send(chunk([], usage=self._usage(s)))
        if not s.omit_done:
            await send(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ /v1/embeddings
    async def _embeddings(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.body
        invalid = self._invalid(body, rec, ("model", "input"))
        if invalid is not None:
            return invalid
        assert body is not None
        inp = body["input"]
        if isinstance(inp, str) or (isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp)):
            items: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(t, (str, list)) for t in inp):
            items = list(inp)
        else:
            return self._error(
                400,
                _error_body(
                    "'$.input' is invalid. Please check the API reference: "
                    "https://platform.openai.com/docs/api-reference.",
                    "invalid_request_error",
                    "input",
                    None,
                ),
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self._error(
                400,
                _error_body(
                    f"Invalid value for 'encoding_format': {encoding!r}.",
                    "invalid_request_error",
                    "encoding_format",
                    "invalid_value",
                ),
            )
        dims = body.get("dimensions", EMBEDDING_DIMENSIONS)
        if not isinstance(dims, int) or dims < 1:
            return self._error(
                400,
                _error_body(
                    "Invalid value for 'dimensions'.", "invalid_request_error", "dimensions", "invalid_value"
                ),
            )
        scenario = self._next_scenario()
        rid = f"emb-{next(self._ids)}"
        try:
            await self._sleep(request, scenario.first_byte_delay)
            if scenario.hang:
                await self._hang(request)
        except asyncio.CancelledError:
            self._record_disconnect(rid)
            raise
        except _ClientGone:
            self._record_disconnect(rid)
            return web.Response(status=499)
        if scenario.status != 200:
            return self._scenario_error(scenario, rid)
        data = []
        for index, item in enumerate(items):
            vec = embedding_vector(item, dims)
            emb: Any = vec
            if encoding == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": index, "embedding": emb})
        payload: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not scenario.omit_usage:
            payload["usage"] = {
                "prompt_tokens": scenario.prompt_tokens,
                "total_tokens": scenario.prompt_tokens,
            }
        return web.Response(
            text=_dumps(payload), content_type="application/json", headers=self._base_headers(rid, scenario)
        )


# ---------------------------------------------------------------------- /v1/responses (protocols.md §2)
def _responses_usage(s: Scenario) -> dict:
    return {
        "input_tokens": s.prompt_tokens,
        "input_tokens_details": {"cached_tokens": s.cached_tokens},
        "output_tokens": s.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": s.reasoning_tokens},
        "total_tokens": s.prompt_tokens + s.completion_tokens,
    }


async def _responses(fake: FakeOpenAI, request: web.Request, rec: Recorded) -> web.StreamResponse:
    """POST /v1/responses: a Response object, or its events (``event:`` + ``data:`` lines, no [DONE]).

    The Scenario gives the output (``content`` as one message, or ``tool_calls`` as function_call items),
    the usage (prompt/completion/cached/reasoning tokens; ``omit_usage`` -> null), the status
    (``finish_reason`` "length"/"content_filter" -> incomplete, "failed" -> response.failed) and, when
    streaming, ``cut_after`` / ``error_after`` (counted in delta events; error_after sends an ``error``
    event and ends), ``omit_done`` (no terminal event) and ``chunk_delay``.
    """
    body = rec.body
    invalid = fake._invalid(body, rec, ("model", "input"))
    if invalid is not None:
        return invalid
    assert body is not None
    s = fake._next_scenario()
    n = next(fake._ids)
    rid = f"resp_{n:024x}"
    state: dict[str, Any] = {"cut": False, "resp": None}
    fake._adjust_in_flight(1)
    try:
        await fake._sleep(request, s.first_byte_delay)
        if s.hang:
            await fake._hang(request)
        if s.status != 200:
            return fake._scenario_error(s, rid)
        if s.tool_calls:
            items = [{"type": "function_call", "id": f"fc_{n}_{i}", "call_id": tc["id"], "name": tc["name"],
                      "arguments": tc.get("arguments", ""), "status": "completed"}
                     for i, tc in enumerate(s.tool_calls)]
        else:
            items = [{"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": s.content, "annotations": [], "logprobs": []}]}]
        status, details, error = "completed", None, None
        if s.finish_reason in ("length", "content_filter"):
            status = "incomplete"
            details = {"reason": "max_output_tokens" if s.finish_reason == "length" else "content_filter"}
        elif s.finish_reason == "failed":
            status, error = "failed", {"code": "server_error", "message": s.error_message}

        def response(st: str, output: list, usage: dict | None) -> dict:
            return {"id": rid, "object": "response", "created_at": int(time.time()), "status": st,
                    "error": error if st == "failed" else None,
                    "incomplete_details": details if st == "incomplete" else None,
                    "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
                    "model": body["model"], "output": output, "parallel_tool_calls": True, "temperature": 1.0,
                    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": body.get("tools") or [],
                    "top_p": 1.0, "usage": usage, "metadata": {}}

        usage = None if s.omit_usage else _responses_usage(s)
        if not body.get("stream"):
            return web.Response(text=_dumps(response(status, items, usage)), content_type="application/json",
                                headers=fake._base_headers(rid, s))
        resp = web.StreamResponse(status=200, headers=fake._base_headers(rid, s))
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        state["resp"] = resp
        await resp.prepare(request)
        seq = itertools.count()
        sent = 0

        async def send(kind: str, **fields: Any) -> None:
            if s.chunk_delay:
                await fake._sleep(request, s.chunk_delay)
            fake._check(request)
            data = {"type": kind, "sequence_number": next(seq), **fields}
            await resp.write(f"event: {kind}\ndata: {_dumps(data)}\n\n".encode())

        async def delta(kind: str, **fields: Any) -> bool:
            """Send one delta event unless the scenario stops here; False when it stopped."""
            nonlocal sent
            if s.cut_after is not None and sent >= s.cut_after:
                state["cut"] = True
                if request.transport is not None:
                    request.transport.abort()
                return False
            if s.error_after is not None and sent >= s.error_after:
                await send("error", code=s.error_code or s.error_type, message=s.error_message, param=None)
                await resp.write_eof()
                return False
            await send(kind, **fields)
            sent += 1
            return True

        await send("response.created", response=response("in_progress", [], None))
        await send("response.in_progress", response=response("in_progress", [], None))
        for index, item in enumerate(items):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                await send("response.output_item.added", output_index=index,
                           item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                await send("response.content_part.added", **where, content_index=0, part=part)
                for piece in split_content(s.content):
                    if not await delta("response.output_text.delta", **where, content_index=0, delta=piece,
                                       logprobs=[]):
                        return resp
                await send("response.output_text.done", **where, content_index=0, text=s.content, logprobs=[])
                await send("response.content_part.done", **where, content_index=0, part=item["content"][0])
            else:
                await send("response.output_item.added", output_index=index,
                           item={**item, "arguments": "", "status": "in_progress"})
                for frag in _split_arguments(item["arguments"]):
                    if frag and not await delta("response.function_call_arguments.delta", **where, delta=frag):
                        return resp
                await send("response.function_call_arguments.done", **where, name=item["name"],
                           arguments=item["arguments"])
            await send("response.output_item.done", output_index=index, item=item)
        if not s.omit_done:
            await send(f"response.{status}", response=response(status, items, usage))
        await resp.write_eof()
        return resp
    except asyncio.CancelledError:
        if not state["cut"]:
            fake._record_disconnect(rid)
        raise
    except (_ClientGone, ConnectionError):
        if not state["cut"]:
            fake._record_disconnect(rid)
        return state["resp"] or web.Response(status=499)
    finally:
        fake._adjust_in_flight(-1)
