"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio

import orjson

from aicredits.api.http import Request, send_bytes, until_answered, wait_disconnect
from aicredits.domain.cache_entry import sse_chunks
from aicredits.domain.money import format_inr

# how long a stream cut at the end of the drain time may take to send its cut event (a client that
# does not read it is dropped)
STOP_GRACE_SECONDS = 5.0
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def call_headers(request_id: str, cache: bytes = b"bypass") -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", request_id.encode()), (b"x-aicredits-cache", cache)]


def metered_headers(request_id: str, meter) -> list[tuple[bytes, bytes]]:
    """The headers of a settled, non-streaming call (docs/api.md): its cost and the balance after it."""
    settled = meter.settled
    out = [(b"x-request-id", request_id.encode()), (b"x-aicredits-cache", meter.cache.encode()),
           (b"x-aicredits-cost", format_inr(settled.charged).encode())]
    if settled.available is not None:   # None: the charge waits in the settle journal (docs/billing.md)
        out.append((b"x-aicredits-balance", format_inr(settled.available).encode()))
    out.append((b"x-aicredits-overhead-ms", f"{meter.overhead_ms():.3f}".encode()))
    return out


async def json_call(gw, req: Request, send, create) -> None:
    """A metered call with a JSON request and a JSON answer (embeddings, images): `create(body,
    auth, request_id, started)` gives (the answer's bytes, its Meter), while the client is watched."""
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    raw, meter = await until_answered(req.receive, create(body, auth, req.request_id, req.scope["aicredits.started"]))
    await send_bytes(send, 200, raw, metered_headers(req.request_id, meter))


async def chat_completions(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    chat = gw.chat

    async def answer():
        """The whole answer, or an opened stream (before its first byte); a cache hit's answer."""
        call = await chat.open(body, auth, req.request_id, req.scope["aicredits.started"], cached=True)
        if call.cache == "hit":
            return call, await chat.serve_hit(call)
        return call, await (chat.start_stream(call) if call.stream else chat.complete(call))

    call, out = await until_answered(req.receive, answer())
    if call.cache == "hit":
        await send_hit(send, req.request_id, call, out)
        return
    if not call.stream:
        await send_bytes(send, 200, out, metered_headers(req.request_id, call))
        return
    headers = call_headers(req.request_id, call.cache.encode())
    headers.append((b"x-aicredits-overhead-ms", f"{call.overhead_ms():.3f}".encode()))
    await stream_response(send, req.receive, call, chat.relay(call, out), headers)


async def send_hit(send, request_id: str, call, data: dict) -> None:
    """A cache hit: the stored answer as JSON, or replayed as a whole SSE stream. A free hit
    moved no money: it has no x-aicredits-balance (GET /v1/credits has the balance)."""
    if not call.stream and call.hold:
        await send_bytes(send, 200, orjson.dumps(data), metered_headers(request_id, call))
        return
    charged = call.settled.charged if call.hold else 0
    headers = [*call_headers(request_id, b"hit"), (b"x-aicredits-cost", format_inr(charged).encode()),
               (b"x-aicredits-overhead-ms", f"{call.overhead_ms():.3f}".encode())]
    if not call.stream:
        await send_bytes(send, 200, orjson.dumps(data), headers)
        return
    headers = [*SSE_HEADERS, *headers]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": sse_chunks(data, call.include_usage), "more_body": False})



async def stream_response(send, receive, call, chunks, headers) -> None:
    """Send an SSE body as the chunks come; if the client goes away, cancel at once (the
    relay's `finally` closes the upstream connection and settles)."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})

    async def pump() -> None:
        try:
            async for piece in chunks:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await chunks.aclose()

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
                asyncio.current_task().uncancel()
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
