"""POST /v1/chat/completions, and what every metered route's answer carries (its headers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aicredits.api.admission import Admission
from aicredits.api.http import (
    SSE_HEADERS,
    Handler,
    Headers,
    Request,
    Send,
    send_body,
    send_bytes,
    send_sse,
    send_start,
    until_answered,
)
from aicredits.domain.money import format_inr
from aicredits.ports import KeyAuth
from aicredits.services.chat import ChatService
from aicredits.services.metering import Meter

# create(body, auth, request_id, started) -> (the answer's bytes, its Meter)
JsonCreate = Callable[[object, KeyAuth, str, float], Awaitable[tuple[bytes, Meter]]]


def call_headers(request_id: str, cache: bytes = b"bypass") -> Headers:
    return [(b"x-request-id", request_id.encode()), (b"x-aicredits-cache", cache)]


def metered_headers(request_id: str, meter: Meter) -> Headers:
    """The headers of a settled, non-streaming call (docs/api.md): its cost and the balance after it."""
    settled = meter.settled
    assert settled is not None   # a call answered is settled
    out = [(b"x-request-id", request_id.encode()), (b"x-aicredits-cache", meter.cache.encode()),
           (b"x-aicredits-cost", format_inr(settled.charged).encode())]
    if settled.available is not None:   # None: the charge waits in the settle journal (docs/billing.md)
        out.append((b"x-aicredits-balance", format_inr(settled.available).encode()))
    out.append((b"x-aicredits-overhead-ms", f"{meter.overhead_ms():.3f}".encode()))
    return out


def json_call(admission: Admission, create: JsonCreate, max_body: int) -> Handler:
    """A metered call with a JSON request and a JSON answer (embeddings, images): `create` gives
    (the answer's bytes, its Meter), while the client is watched."""

    async def handle(req: Request, send: Send) -> None:
        auth = await admission.admit(req)
        body = await req.json(max_body)
        raw, meter = await until_answered(req.receive,
                                          create(body, auth, req.request_id, req.scope["aicredits.started"]))
        await send_bytes(send, 200, raw, metered_headers(req.request_id, meter))
    return handle


def chat_completions(admission: Admission, chat: ChatService, max_body: int) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        auth = await admission.admit(req)
        started = req.scope["aicredits.started"]
        raw: bytes | None = None
        if chat.cache is not None:
            # with a response cache on, bytes read before may be an exact hit, found without
            # parsing them again (ChatService.open_hit); anything else is read as usual
            raw = await req.body(max_body)
            hit = await chat.open_hit(raw, auth, req.request_id, started)
            if hit is not None:
                req.release_body()
                if chat.free_hit(hit):   # nothing held nor charged: no call to cancel if the client leaves
                    await chat.admit_hit(hit)
                    answer_bytes = await chat.serve_hit(hit)
                else:
                    answer_bytes = await until_answered(req.receive, _charged_hit(chat, hit))
                await send_hit(send, req.request_id, hit, answer_bytes)
                return
            body = await req.parse_json(raw)
        else:
            body = await req.json(max_body)

        async def answer() -> tuple[Meter, Any]:
            """The whole answer, or an opened stream (before its first byte); a cache hit's answer."""
            call = await chat.open(body, auth, req.request_id, started, cached=True, raw=raw)
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
        await send_sse(send, req.receive, call, chat.relay(call, out), headers)
    return handle


async def _charged_hit(chat: ChatService, call: Meter) -> bytes:
    await chat.admit_hit(call)
    return await chat.serve_hit(call)


FREE = format_inr(0).encode()


async def send_hit(send: Send, request_id: str, call: Meter, body: bytes) -> None:
    """A cache hit: the stored answer as JSON, or replayed as a whole SSE stream (`body`, made by
    ChatService.serve_hit). A free hit moved no money: it has no x-aicredits-balance (GET
    /v1/credits has the balance)."""
    if not call.stream and call.hold:
        await send_bytes(send, 200, body, metered_headers(request_id, call))
        return
    charged = call.settled.charged if call.hold and call.settled else 0
    headers = [(b"x-request-id", request_id.encode()), (b"x-aicredits-cache", b"hit"),
               (b"x-aicredits-cost", format_inr(charged).encode() if charged else FREE),
               (b"x-aicredits-overhead-ms", f"{call.overhead_ms():.3f}".encode())]
    if not call.stream:
        await send_bytes(send, 200, body, headers)
        return
    await send_start(send, 200, [*SSE_HEADERS, *headers])
    await send_body(send, body)
