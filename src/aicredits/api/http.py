"""The gateway's one layer of raw ASGI: the request (`Request`: headers, the body within its
limits), and every response written (`send_bytes`, `send_json`, `send_error`, `send_redirect`,
`send_sse`). Handlers and the dispatcher (api/dispatch.py) build no ASGI message themselves."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from os import urandom
from typing import Any, Protocol, TypeVar

import orjson

from aicredits.errors import GatewayError, InvalidRequest, RateLimited, RequestTooLarge
from aicredits.services.concurrency import Slot
from aicredits.services.metering import CLIENT_GONE
from aicredits.services.validation import check_json_size, check_nesting, too_deep

JSON = b"application/json"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
SCAN_IN_THREAD_BYTES = 1024 * 1024   # a larger body's structure is counted off the event loop
_SCANNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aicredits-body-scan")
T = TypeVar("T")
# how long a stream cut at the end of the drain time may take to send its cut event (a client that
# does not read it is dropped)
STOP_GRACE_SECONDS = 5.0
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]

# the ASGI interface, as Starlette spells it (so the mounted Starlette apps are ASGIApps too)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class BodyBudget:
    """The bytes of request bodies one process is receiving and parsing at the same time
    (AICREDITS_BODY_BYTES_IN_FLIGHT). A body is counted from its declared Content-Length (or as
    its chunks arrive) until it is parsed, or until its request ends; one that does not fit is
    refused at once with a 429, before more of it is read."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise RateLimited("The gateway is receiving too many large request bodies at once; retry in a "
                              "moment.", retry_after=1)
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n


class Request:
    __slots__ = ("_budget", "_headers", "_held", "receive", "request_id", "scope", "slot")

    def __init__(self, scope: Scope, receive: Receive, budget: BodyBudget | None = None) -> None:
        self.scope = scope
        self.receive = receive
        self._budget = budget
        self._held = 0          # bytes of the budget this request's body holds
        self.slot: Slot | None = None   # its key's concurrency slot (services/concurrency.py), if any
        self._headers: dict[bytes, bytes] | None = None
        rid = self.header(b"x-request-id")
        self.request_id = rid.decode() if rid and REQUEST_ID_RE.match(rid.decode("latin-1")) else urandom(16).hex()

    @property
    def headers(self) -> dict[bytes, bytes]:
        if self._headers is None:
            self._headers = {k.lower(): v for k, v in self.scope["headers"]}
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    def authorization(self) -> str | None:
        raw = self.headers.get(b"authorization")
        return raw.decode("latin-1") if raw is not None else None

    def _hold(self, size: int) -> None:
        """Count `size` bytes of body in the process's budget (a 429 when they do not fit)."""
        if self._budget is not None and size > self._held:
            self._budget.take(size - self._held)
            self._held = size

    def release_body(self) -> None:
        """The body is parsed (or the request over): its bytes leave the budget."""
        if self._held and self._budget is not None:
            self._budget.give(self._held)
            self._held = 0

    async def body(self, limit: int) -> bytes:
        """The whole body: a 413 past `limit` bytes (declared or received), a 429 when the
        process's body budget is full. It stays counted in the budget until release_body()."""
        return bytes(await self._read(limit))   # (a body of one message: that message's bytes, no copy)

    async def _read(self, limit: int) -> bytes | bytearray:
        """The body: one message's bytes as they came, or several gathered in one buffer (no
        second copy to join them)."""
        self._declared(limit)
        message = await self.receive()
        chunk = self._counted(message, 0, limit)
        if not message.get("more_body", False):
            return chunk
        buf = bytearray(chunk)
        while True:
            message = await self.receive()
            buf += self._counted(message, len(buf), limit)
            if not message.get("more_body", False):
                return buf

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """The body as it arrives (a multipart upload is parsed so, api/forms.py): a 413 once it
        is, or says it will be, larger than `limit` bytes; a 429 when the process's body budget
        is full. The bytes stay counted in the budget until release_body()."""
        self._declared(limit)
        size = 0
        while True:
            message = await self.receive()
            chunk = self._counted(message, size, limit)
            if chunk:
                size += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                break

    def _declared(self, limit: int) -> None:
        """A 413 at once for a declared Content-Length past `limit`; else the declared bytes are
        counted in the budget."""
        declared = self.header(b"content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                raise InvalidRequest("Invalid Content-Length header.") from None
            if declared_size > limit:
                raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            self._hold(declared_size)

    def _counted(self, message: Message, before: int, limit: int) -> bytes:
        """One received message's bytes, counted after the `before` bytes already received."""
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size = before + len(chunk)
            if size > limit:
                raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            self._hold(size)
        return chunk

    async def json(self, limit: int) -> object:
        """The parsed body. Before parsing, its objects, arrays and values are counted in the
        bytes (a 413 past services/validation.py's limits); after, its nesting (a 400)."""
        try:
            return await self._parse(await self._read(limit))
        finally:
            self.release_body()

    async def parse_json(self, raw: bytes) -> object:
        """`json` of a body read already (`body`)."""
        try:
            return await self._parse(raw)
        finally:
            self.release_body()

    @staticmethod
    async def _parse(raw: bytes | bytearray) -> object:
        if not raw:
            raise InvalidRequest("The request body is empty; send a JSON object.")
        if len(raw) > SCAN_IN_THREAD_BYTES:   # one scanner thread: the event loop keeps its turns
            await asyncio.get_running_loop().run_in_executor(_SCANNER, check_json_size, raw)
        else:
            check_json_size(raw)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in exc.msg:   # orjson's own limit, far past ours
                raise too_deep() from None
            raise InvalidRequest(f"The request body is not valid JSON: {exc.msg} (at byte {exc.pos}).") from None
        check_nesting(body)   # a 400 past MAX_NESTING levels, before anything walks or re-encodes it
        return body


class ClientGone(Exception):
    """The client disconnected before its answer: nothing is sent."""


Handler = Callable[[Request, Send], Awaitable[None]]   # one route's method (api/routes.py)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (call once the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_answered(receive: Receive, work: Awaitable[T]) -> T:
    """Await a call up to its answer (or a stream's opening, before its first byte) while watching
    the connection, as a stream is watched: if the client disconnects first, the call is cancelled
    at once (its upstream request closed, its hold settled as `client_disconnect`, nothing
    charged) and ClientGone raised. The call runs in this task, so a stream that opens is relayed
    without a task switch; the watcher only cancels it."""
    me = asyncio.current_task()
    assert me is not None   # always called from a request's task
    gone = False

    async def watch() -> None:
        nonlocal gone
        await wait_disconnect(receive)
        gone = True
        me.cancel(CLIENT_GONE)

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except BaseException as exc:
        if not gone:
            raise
        if me.uncancel() > 0 and isinstance(exc, asyncio.CancelledError):
            raise   # cancelled from elsewhere as well (the server stopping)
        raise ClientGone() from None
    finally:
        watcher.cancel()
    if gone:   # the call swallowed the cancel and answered: the answer goes to the closed connection
        me.uncancel()
    return result


async def send_start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_body(send: Send, body: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers, content_type: bytes = JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, obj: object, headers: Headers | tuple[()] = ()) -> None:
    await send_bytes(send, status, orjson.dumps(obj), list(headers))


async def send_error(send: Send, exc: GatewayError, headers: Headers | tuple[()] = ()) -> None:
    await send_bytes(send, exc.status, exc.render(), [*headers, *exc.headers()])


async def send_redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


class StoppableCall(Protocol):
    """What send_sse needs of a metered stream (services/metering.py's Meter)."""

    client_gone: bool

    def stop(self) -> bool: ...


async def send_sse(send: Send, receive: Receive, call: StoppableCall, chunks: AsyncIterator[bytes],
                   headers: Headers) -> None:
    """Send an SSE body as the chunks come; if the client goes away, cancel at once (the
    relay's `finally` closes the upstream connection and settles)."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})

    async def pump() -> None:
        try:
            async for piece in chunks:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await chunks.aclose()   # type: ignore[attr-defined]   # an async generator (the relay)

    pump_task = asyncio.ensure_future(pump())
    watch = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait((pump_task, watch), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        watch.cancel()
        # only the server cancels this task (a client leaving is seen by `watch`): its drain time
        # is up. The relay cuts the stream, settles it and sends the cut event, then the body ends.
        if call.stop():
            await asyncio.wait((pump_task,), timeout=STOP_GRACE_SECONDS)
            if pump_task.done():
                me = asyncio.current_task()
                if me is not None:
                    me.uncancel()
                return
        call.client_gone = True
        pump_task.cancel()
        raise
    if pump_task.done():
        watch.cancel()
        pump_task.result()
        return
    call.client_gone = True
    pump_task.cancel()
    try:
        await pump_task
    except asyncio.CancelledError:
        pass
