"""A fake OpenAI upstream for the aicredits test suite.

A *real* HTTP server (aiohttp.web) bound to 127.0.0.1 on a free port, running in a background thread with its
own event loop, speaking OpenAI's wire protocol, as OpenAI's API reference describes it:

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

Flavors (``FakeOpenAI(flavor=...)``); the Scenario queue, knobs and recording are the same for all three:

* ``"openai"`` (default) - everything above, ``base_url`` ``http://127.0.0.1:PORT/v1``.
* ``"gemini"`` - Google's OpenAI-compatible surface, ``base_url`` ``http://127.0.0.1:PORT/v1beta/openai``:
  ``POST /chat/completions``, ``POST /embeddings``, ``GET /models``; ``Authorization: Bearer``. Errors are
  a JSON *array* ``[{"error": {"code", "message", "status"}}]``; a wrong key is 400 INVALID_ARGUMENT "API key
  not valid...", a missing one 403 PERMISSION_DENIED. Streams have no role chunk (every delta carries
  ``role``); tool calls arrive whole in one delta (ids ``function-call-<digits>``, no ``index`` unless
  :attr:`FakeOpenAI.gemini_tool_call_index`); the last delta carries ``finish_reason`` and, when
  ``include_usage``, ``usage`` (no ``choices: []`` usage chunk). ``usage.completion_tokens`` excludes thinking
  tokens (``Scenario.reasoning_tokens``) while ``total_tokens`` includes them, as the real endpoint reports.
* ``"azure"`` - an Azure OpenAI resource, ``base_url`` ``http://127.0.0.1:PORT``:
  ``POST /openai/deployments/{deployment}/chat/completions`` and ``.../embeddings``, ``?api-version=``
  required (else 404 ``Resource not found``), header ``api-key`` (else 401). ``model`` in the body is
  optional; responses name the deployment's model from :attr:`FakeOpenAI.azure_models`. Responses carry
  ``prompt_filter_results`` and per-choice ``content_filter_results``; a stream opens with a ``choices: []``
  prompt-filter chunk whose id/model/object are empty.

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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.fakes import openai_media as _media  # /v1/images/generations, /v1/audio/* routes

__all__ = ["FLAVORS", "GEMINI_MODELS", "MODELS", "FakeOpenAI", "Recorded", "Scenario", "embedding_vector",
           "org_rate_limit_message", "split_content"]

FLAVORS = ("openai", "gemini", "azure")
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()   # Scenario.usage not given
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large")
GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-embedding-001")
EMBEDDING_DIMENSIONS = 3
SYSTEM_FINGERPRINT = "fp_fake0001"

GEMINI_PREFIX = "/v1beta/openai"
BASE_PATHS = {"openai": "/v1", "gemini": GEMINI_PREFIX, "azure": ""}  # base_url: http://127.0.0.1:PORT + path
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
GEMINI_BAD_KEY = "API key not valid. Please pass a valid API key."
GEMINI_NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). "
                 "Please use API Key or other form of API consumer identity to call this API.")
AZURE_ROUTE = re.compile(
    r"/openai/deployments/([^/]+)/(chat/completions|embeddings|images/generations|audio/speech|audio/transcriptions)")
AZURE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
AZURE_DENIED = {"error": {"code": "401", "message": (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource.")}}


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
    drip: float | None = None  # the 200 head, then the body (a stream's events too) one byte every `drip` seconds
    reset_after_bytes: int | None = None  # non-stream: the 200 head and this many body bytes, then a TCP reset
    stall_after: int | None = None  # stream: after this many delta events, send nothing for stall_seconds
    stall_seconds: float = 30.0
    error_code: str | None = None  # "code" in the error body (status != 200 and error_after)
    # the exact value sent as "usage" (chat JSON and stream usage chunk, embeddings, responses), e.g. {},
    # {"prompt_tokens": None, ...}, float or negative counts; UNSET: the usage the counts above give
    usage: Any = field(default_factory=lambda: UNSET)
    # a JSON answer (chat, embeddings, responses; not a stream) as sent: mangle(payload), e.g.
    # lambda p: {**p, "choices": {}}; what it returns is sent as the JSON body
    mangle: Callable[[dict], Any] | None = None
    # a legacy (pre-tools) function call {"name", "arguments"}: message.function_call, streamed as a
    # function_call delta with the name then >= 2 argument fragments; finish_reason "function_call"
    function_call: dict | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None  # parsed JSON object, else None
    raw: bytes
    query: dict[str, str] = field(default_factory=dict)


def org_rate_limit_message(org: str, project: str | None = None, model: str = "gpt-4o-mini") -> str:
    """OpenAI's 429 message, which names the operator's organization (and project) id."""
    where = f"in organization {org}" + (f" (project {project})" if project else "")
    return (f"Rate limit reached for {model} {where} on tokens per min (TPM): Limit 30000, Used 29850, "
            "Requested 512. Please try again in 1.2s. Visit https://platform.openai.com/account/rate-limits "
            "to learn more.")


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


def _finish(s: Scenario) -> str:
    """The finish_reason a Scenario ends its choice with."""
    return s.finish_reason or ("tool_calls" if s.tool_calls else "function_call" if s.function_call else "stop")


def _mangled(s: Scenario, payload: dict) -> Any:
    return s.mangle(payload) if s.mangle is not None else payload


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(map(str, parts)).encode()).digest()


def _gemini_id(n: int) -> str:
    """A response id shaped like Gemini's (23 url-safe characters, e.g. ``HCWpavSjNMK7vdIPmsSF6Ac``)."""
    return base64.urlsafe_b64encode(_digest("gemini", n)[:17]).decode()[:23]


def _gemini_call_id(rid: str, index: int) -> str:
    """A tool-call id shaped like Gemini's: ``function-call-`` and up to 20 digits."""
    return f"function-call-{int.from_bytes(_digest(rid, index)[:8], 'big')}"


def _azure_filters(*, prompt: bool = False) -> dict:
    """Azure's content-filter verdicts for harmless text (``prompt``: the prompt-side set, with jailbreak)."""
    safe = {"filtered": False, "severity": "safe"}
    verdicts: dict[str, Any] = {"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe}
    if prompt:
        verdicts["jailbreak"] = {"filtered": False, "detected": False}
    else:
        verdicts["protected_material_code"] = {"filtered": False, "detected": False}
        verdicts["protected_material_text"] = {"filtered": False, "detected": False}
    return dict(sorted(verdicts.items()))


def _azure_prompt_filters() -> list[dict]:
    return [{"prompt_index": 0, "content_filter_results": _azure_filters(prompt=True)}]


_Frame = tuple[str, bytes]  # ("open" | "delta" | "tail", SSE bytes): see FakeOpenAI._chat_stream


class _ClientGone(Exception):
    """The client closed the connection."""


class _ServerStopping(_ClientGone):
    """stop() was called: the connection has been aborted (not a client disconnect)."""


class FakeOpenAI:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (see module docstring)."""

    def __init__(self, api_key: str = "sk-fake-upstream-key", flavor: str = "openai"):
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, not {flavor!r}")
        self.api_key = api_key
        self.flavor = flavor
        # azure: deployment -> the model name responses carry (default: the deployment name itself)
        self.azure_models: dict[str, str] = {}
        # gemini: add "index" to streamed tool calls (the real endpoint omits it)
        self.gemini_tool_call_index = False
        self.port: int = 0
        self.base_url: str = ""
        self.requests: list[Recorded] = []
        self.speech_format: str | None = None   # /audio/speech answers this format whatever is asked
        self.speech_sent: dict[str, bytes] = {}  # input text -> the audio /audio/speech sent for it
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
        self.base_url = f"http://127.0.0.1:{self.port}{BASE_PATHS[self.flavor]}"
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
            self.speech_format = None
            self.speech_sent.clear()

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

    def _base_headers(self, rid: str, scenario: Scenario | None = None) -> dict[str, str]:
        if self.flavor == "gemini":
            headers = {"server-timing": "gfet4t7; dur=1", "x-content-type-options": "nosniff"}
        elif self.flavor == "azure":
            request_id = str(uuid.UUID(bytes=_digest("azure", rid)[:16]))
            headers = {"apim-request-id": request_id, "x-request-id": request_id, "x-ms-region": "East US"}
        else:
            headers = {"x-request-id": f"req_{rid}", "openai-processing-ms": "1",
                       "openai-version": "2020-10-01"}
        if scenario is not None:
            headers.update(scenario.headers)
        return headers

    def _error(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, text=_dumps(body), content_type="application/json", headers=headers or {}
        )

    def _error_object(
        self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
        code: str | None = None,
    ) -> dict:
        """One error object in this flavor's shape (Gemini: code/message/status; else OpenAI's)."""
        if self.flavor == "gemini":
            status_name = GEMINI_STATUS.get(status, "UNKNOWN")
            return {"error": {"code": status, "message": message, "status": status_name}}
        return _error_body(message, type_, param, code)

    def _fail(
        self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error response in this flavor's shape (Gemini wraps the object in a one-element array)."""
        body = self._error_object(status, message, type_, param, code)
        return self._error(status, [body] if self.flavor == "gemini" else body, headers)

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
        route = {"openai": self._route_openai, "gemini": self._route_gemini, "azure": self._route_azure}
        found = route[self.flavor](request)
        if isinstance(found, web.StreamResponse):  # refused: unknown route or bad credentials
            return found
        return await found(request, rec)

    def _route_openai(self, request: web.Request) -> Any:
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
        return route

    def _route_gemini(self, request: web.Request) -> Any:
        path = request.path.rstrip("/")
        route = {
            ("POST", f"{GEMINI_PREFIX}/chat/completions"): self._chat,
            ("POST", f"{GEMINI_PREFIX}/embeddings"): self._embeddings,
            ("GET", f"{GEMINI_PREFIX}/models"): self._models,
        }.get((request.method, path))
        if route is None:
            return self._fail(404, f"Method not found: {request.method} {request.path}")
        auth = request.headers.get("authorization", "")
        if auth == f"Bearer {self.api_key}":
            return route
        if auth.removeprefix("Bearer ").strip():
            body = self._error_object(400, GEMINI_BAD_KEY)
            body["error"]["details"] = [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"},
            }]
            return self._error(400, [body])
        return self._fail(403, GEMINI_NO_KEY)

    def _route_azure(self, request: web.Request) -> Any:
        path = request.path.rstrip("/")
        match = AZURE_ROUTE.fullmatch(path)
        responses = path == "/openai/responses"   # the Responses API: the deployment is the body's model
        if request.method != "POST" or (match is None and not responses) or not request.query.get("api-version"):
            return self._error(404, AZURE_NOT_FOUND)
        if request.headers.get("api-key") != self.api_key:
            return self._error(401, AZURE_DENIED)
        if responses:
            return lambda req, rec: _responses(self, req, rec)
        return {"chat/completions": self._chat, "embeddings": self._embeddings,
                "images/generations": lambda req, rec: _media.images(self, req, rec),
                "audio/speech": lambda req, rec: _media.speech(self, req, rec),
                "audio/transcriptions": lambda req, rec: _media.transcriptions(self, req, rec)}[match.group(2)]

    def _response_model(self, body: dict, rec: Recorded) -> str:
        """The ``model`` a response names: the requested one, or on Azure the deployment's model."""
        if self.flavor == "azure":
            match = AZURE_ROUTE.fullmatch(rec.path.rstrip("/"))
            assert match is not None
            return self.azure_models.get(match.group(1), match.group(1))
        return body["model"]

    # ------------------------------------------------------------------ /v1/models
    async def _models(self, request: web.Request, rec: Recorded) -> web.Response:
        if self.flavor == "gemini":
            data = [{"id": f"models/{m}", "object": "model", "owned_by": "google"} for m in GEMINI_MODELS]
        else:
            data = [{"id": m, "object": "model", "created": 1686935002, "owned_by": "openai"} for m in MODELS]
        return web.json_response({"object": "list", "data": data}, dumps=_dumps)

    # ------------------------------------------------------------------ shared validation
    def _invalid(self, body: dict | None, rec: Recorded, required: tuple[str, ...]) -> web.Response | None:
        if self.flavor == "azure":  # the deployment in the path selects the model
            required = tuple(key for key in required if key != "model")
        if body is None:
            if not rec.raw:
                msg = "We could not parse the JSON body of your request: the body is empty."
            else:
                msg = (
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                    "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
                )
            return self._fail(400, msg)
        for key in required:
            if key not in body:
                return self._fail(
                    400, f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter"
                )
        if "messages" in required and not isinstance(body["messages"], list):
            return self._fail(
                400, "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
            )
        if "model" in body and not isinstance(body["model"], str):
            return self._fail(
                400, "Invalid type for 'model': expected a string.", param="model", code="invalid_type"
            )
        return None

    def _scenario_error(self, scenario: Scenario, rid: str) -> web.Response:
        return self._fail(
            scenario.status,
            scenario.error_message,
            scenario.error_type,
            None,
            scenario.error_code,
            self._base_headers(rid, scenario),
        )

    # ------------------------------------------------------------------ /v1/chat/completions
    def _usage(self, s: Scenario) -> Any:
        if s.usage is not UNSET:
            return s.usage
        if self.flavor == "gemini":  # thinking tokens count in total_tokens only, as Gemini reports them
            return {
                "completion_tokens": s.completion_tokens - s.reasoning_tokens,
                "prompt_tokens": s.prompt_tokens,
                "total_tokens": s.prompt_tokens + s.completion_tokens,
            }
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
        n = next(self._ids)
        rid = _gemini_id(n) if self.flavor == "gemini" else f"chatcmpl-{n}"
        model = self._response_model(body, rec)
        state = {"cut": False, "resp": None}
        self._adjust_in_flight(1)
        try:
            await self._sleep(request, scenario.first_byte_delay)
            if scenario.hang:
                await self._hang(request)
            if scenario.status != 200:
                return self._scenario_error(scenario, rid)
            if body.get("stream"):
                return await self._chat_stream(request, body, scenario, rid, model, state)
            answer = self._chat_json(scenario, rid, model)
            if scenario.drip is not None or scenario.reset_after_bytes is not None:
                return await self._drip(request, answer, scenario.drip or 0.0, state, scenario.reset_after_bytes)
            return answer
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

    async def _drip(self, request: web.Request, answer: web.Response, every: float, state: dict,
                    reset_after: int | None = None) -> web.StreamResponse:
        """Send `answer`'s status and headers at once, then its body one byte every `every` seconds
        (an upstream that answered and then stalls); with `reset_after`, reset the connection once
        that many body bytes went out (an upstream that breaks off mid-body)."""
        body = answer.body
        resp = web.StreamResponse(status=answer.status, headers={**answer.headers, "content-length": str(len(body))})
        state["resp"] = resp
        await resp.prepare(request)
        if reset_after is not None and not every:
            await resp.write(body[:reset_after])
            body = b""
        for i in range(len(body)):
            if reset_after is not None and i >= reset_after:
                break
            self._check(request)
            await resp.write(body[i:i + 1])
            await self._sleep(request, every)
        if reset_after is not None:
            state["cut"] = True
            await asyncio.sleep(0.05)   # the bytes leave before the reset
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    def requests_to(self, suffix: str) -> list[Recorded]:
        """The recorded requests whose path ends with `suffix` (how many times an endpoint was called)."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith(suffix)]

    def _chat_json(self, s: Scenario, rid: str, model: str) -> web.Response:
        build = self._gemini_completion if self.flavor == "gemini" else self._openai_completion
        return web.Response(
            text=_dumps(_mangled(s, build(s, rid, model, _finish(s)))),
            content_type="application/json",
            headers=self._base_headers(rid, s),
        )

    def _openai_completion(self, s: Scenario, rid: str, model: str, finish: str) -> dict:
        """A chat.completion object as OpenAI (or, with its content-filter verdicts, Azure) sends it."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": s.content,
            "refusal": None,
            "annotations": [],
        }
        if s.function_call:
            message["content"] = None
            message["function_call"] = {"name": s.function_call["name"],
                                        "arguments": s.function_call.get("arguments", "")}
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
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        payload: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "service_tier": "default",
            "choices": [choice],
        }
        if self.flavor == "azure":
            del payload["service_tier"]
            choice["content_filter_results"] = _azure_filters()
            payload["prompt_filter_results"] = _azure_prompt_filters()
        if not s.omit_usage:
            payload["usage"] = self._usage(s)
        return payload

    def _gemini_completion(self, s: Scenario, rid: str, model: str, finish: str) -> dict:
        message: dict[str, Any] = {"content": s.content, "role": "assistant"}
        if s.tool_calls:
            message = {"role": "assistant", "tool_calls": self._gemini_calls(s, rid, stream=False)}
        payload: dict[str, Any] = {
            "choices": [{"finish_reason": finish, "index": 0, "message": message}],
            "created": int(time.time()),
            "id": rid,
            "model": model,
            "object": "chat.completion",
        }
        if not s.omit_usage:
            payload["usage"] = self._usage(s)
        return payload

    def _gemini_calls(self, s: Scenario, rid: str, stream: bool) -> list[dict]:
        """Gemini's tool calls: whole, ids ``function-call-<digits>`` unless the Scenario names them."""
        calls = []
        for index, tc in enumerate(s.tool_calls or ()):
            call = {
                "function": {"arguments": tc.get("arguments", ""), "name": tc["name"]},
                "id": tc.get("id") or _gemini_call_id(rid, index),
                "type": "function",
            }
            calls.append({"index": index, **call} if stream and self.gemini_tool_call_index else call)
        return calls

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
        if s.function_call:
            fc = s.function_call
            role = {"role": "assistant", "content": None, "function_call": {"name": fc["name"], "arguments": ""},
                    "refusal": None}
            frags = _split_arguments(fc.get("arguments", ""))
            return role, [{"function_call": {"arguments": frag}} for frag in frags if frag], "function_call"
        role = {"role": "assistant", "content": "", "refusal": None}
        return role, [{"content": piece} for piece in split_content(s.content)], "stop"

    def _openai_frames(self, s: Scenario, rid: str, model: str, include_usage: bool) -> list[_Frame]:
        """OpenAI's stream (Azure's adds a prompt-filter chunk first and per-choice filter verdicts)."""
        created = int(time.time())
        azure = self.flavor == "azure"

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
            return _sse(_dumps(obj))

        def choice(delta: dict, finish: str | None = None) -> list:
            entry = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            if azure:  # verdicts on text; {} on the role, tool-call and finish chunks
                entry["content_filter_results"] = _azure_filters() if delta.get("content") else {}
            return [entry]

        role, deltas, default_finish = self._chat_deltas(s)
        frames = []
        if azure:
            preamble = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                        "prompt_filter_results": _azure_prompt_filters()}
            frames.append(("open", _sse(_dumps(preamble))))
        frames.append(("open", chunk(choice(role))))
        frames += [("delta", chunk(choice(delta))) for delta in deltas]
        frames.append(("tail", chunk(choice({}, s.finish_reason or default_finish))))
        if include_usage and not s.omit_usage:
            frames.append(("tail", chunk([], usage=self._usage(s))))
        return frames

    def _gemini_frames(self, s: Scenario, rid: str, model: str, include_usage: bool) -> list[_Frame]:
        """Gemini's stream: role on every delta; the last delta carries finish_reason (and usage if asked)."""
        created = int(time.time())
        if s.tool_calls:
            deltas = [{"role": "assistant", "tool_calls": self._gemini_calls(s, rid, stream=True)}]
        else:
            deltas = [{"content": piece, "role": "assistant"} for piece in split_content(s.content)]
        deltas = deltas or [{"content": "", "role": "assistant"}]
        frames = []
        for n, delta in enumerate(deltas):
            last = n == len(deltas) - 1
            choice = {"delta": delta, **({"finish_reason": _finish(s)} if last else {}), "index": 0}
            obj: dict[str, Any] = {"choices": [choice], "created": created, "id": rid, "model": model,
                                   "object": "chat.completion.chunk"}
            if last and include_usage and not s.omit_usage:
                obj["usage"] = self._usage(s)
            frames.append(("delta", _sse(_dumps(obj))))
        return frames

    async def _chat_stream(
        self, request: web.Request, body: dict, s: Scenario, rid: str, model: str, state: dict
    ) -> web.StreamResponse:
        """Send this flavor's frames, applying the Scenario's delays, cut_after, error_after and omit_done.

        Frames are ``("open" | "delta" | "tail", bytes)``; cut_after / error_after count "delta" frames
        and act before any frame that is not an "open" one.
        """
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        shape = self._gemini_frames if self.flavor == "gemini" else self._openai_frames
        frames = shape(s, rid, model, include_usage)
        if not s.omit_done:
            frames.append(("tail", b"data: [DONE]\n\n"))

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
            if s.drip is None:
                await resp.write(data)
                return
            for i in range(len(data)):   # a slow drip: one byte every `drip` seconds
                await resp.write(data[i:i + 1])
                await self._sleep(request, s.drip)

        sent = 0
        stalled = False
        for kind, data in frames:
            if kind != "open" and s.cut_after is not None and sent >= s.cut_after:
                state["cut"] = True
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if kind != "open" and s.stall_after is not None and sent == s.stall_after and not stalled:
                stalled = True
                await self._sleep(request, s.stall_seconds)
            if kind != "open" and s.error_after is not None and sent >= s.error_after:
                err = self._error_object(500, s.error_message, s.error_type, None, s.error_code)
                await send(_sse(_dumps(err)))
                await resp.write_eof()
                return resp
            await send(data)
            sent += kind == "delta"
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
            return self._fail(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param="input",
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self._fail(
                400,
                f"Invalid value for 'encoding_format': {encoding!r}.",
                param="encoding_format",
                code="invalid_value",
            )
        dims = body.get("dimensions", EMBEDDING_DIMENSIONS)
        if not isinstance(dims, int) or dims < 1:
            return self._fail(
                400, "Invalid value for 'dimensions'.", param="dimensions", code="invalid_value"
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
        payload: dict[str, Any] = {"object": "list", "data": data, "model": self._response_model(body, rec)}
        if scenario.usage is not UNSET:
            payload["usage"] = scenario.usage
        elif not scenario.omit_usage:
            payload["usage"] = {
                "prompt_tokens": scenario.prompt_tokens,
                "total_tokens": scenario.prompt_tokens,
            }
        answer = web.Response(
            text=_dumps(_mangled(scenario, payload)), content_type="application/json",
            headers=self._base_headers(rid, scenario)
        )
        if scenario.drip is None:
            return answer
        state: dict[str, Any] = {"resp": None}
        try:
            return await self._drip(request, answer, scenario.drip, state)
        except (_ClientGone, ConnectionError):
            self._record_disconnect(rid)
            return state["resp"] or web.Response(status=499)


# ---------------------------------------------------------------------- /v1/responses
def _responses_usage(s: Scenario) -> Any:
    if s.usage is not UNSET:
        return s.usage
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

        usage = None if s.omit_usage and s.usage is UNSET else _responses_usage(s)
        if not body.get("stream"):
            return web.Response(text=_dumps(_mangled(s, response(status, items, usage))),
                                content_type="application/json",
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
