"""POST /v1/responses (OpenAI Responses API; native for OpenAI models, translated for the others)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aicredits.api.admission import Admission
from aicredits.api.chat import call_headers, metered_headers
from aicredits.api.http import Handler, Request, Send, send_bytes, send_sse, until_answered
from aicredits.services.responses import ResponsesCall, ResponsesService


def responses(admission: Admission, svc: ResponsesService, max_body: int) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        auth = await admission.admit(req)
        body = await req.json(max_body)

        async def answer() -> tuple[ResponsesCall, bytes | AsyncIterator[bytes]]:
            """The whole answer, or an opened stream's events (before the first byte)."""
            call = await svc.open(body, auth, req.request_id, req.scope["aicredits.started"])
            return call, await (svc.start_stream(call) if call.stream else svc.complete(call))

        call, out = await until_answered(req.receive, answer())
        if isinstance(out, bytes):
            await send_bytes(send, 200, out, metered_headers(req.request_id, call.meter))
            return
        headers = call_headers(req.request_id)
        headers.append((b"x-aicredits-overhead-ms", f"{call.meter.overhead_ms():.3f}".encode()))
        await send_sse(send, req.receive, call.meter, out, headers)
    return handle
