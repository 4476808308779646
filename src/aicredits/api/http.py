"""Minimal ASGI request/response helpers for the gateway's routes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import orjson

from aicredits.errors import GatewayError, InvalidRequest, RequestTooLarge
from aicredits.services.metering import CLIENT_GONE
from aicredits.services.validation import check_nesting, too_deep

JSON = b"application/json"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
T = TypeVar("T")


class Request:
    __slots__ = ("_headers", "receive", "request_id", "scope")

    def __init__(self, scope, receive) -> None:
        self.scope = scope
        self.receive = receive
        self._headers: dict[bytes, bytes] | None = None
        rid = self.header(b"x-request-id")
        self.request_id = rid.decode() if rid and REQUEST_ID_RE.match(rid.decode("latin-1")) else uuid.uuid4().hex

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

    async def body(self, limit: int) -> bytes:
        declared = self.header(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            except ValueError:
                raise InvalidRequest("Invalid Content-Length header.") from None
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def json(self, limit: int) -> object:
        raw = await self.body(limit)
        if not raw:
            raise InvalidRequest("The request body is empty; send a JSON object.")
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


async def wait_disconnect(receive) -> None:
    """Return when the client disconnects (call once the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_answered(receive, work: Awaitable[T]) -> T:
    """Await a call up to its answer (or a stream's opening, before its first byte) while watching
    the connection, as a stream is watched: if the client disconnects first, the call is cancelled
    at once (its upstream request closed, its hold settled as `client_disconnect`, nothing
    charged) and ClientGone raised. The call runs in this task, so a stream that opens is relayed
    without a task switch; the watcher only cancels it."""
    me = asyncio.current_task()
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


async def send_bytes(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                     content_type: bytes = JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, obj: object, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, status, orjson.dumps(obj), list(headers))


async def send_error(send, exc: GatewayError, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, exc.status, exc.render(), [*headers, *exc.headers()])
