"""POST /v1/responses (OpenAI Responses API; native for OpenAI models, translated for the others)."""

from __future__ import annotations

from aicredits.api.chat import call_headers, metered_headers, stream_response
from aicredits.api.http import Request, send_bytes, until_answered


async def responses(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    svc = gw.responses

    async def answer():
        """The whole answer, or an opened stream's events (before the first byte)."""
        call = await svc.open(body, auth, req.request_id, req.scope["aicredits.started"])
        return call, await (svc.start_stream(call) if call.stream else svc.complete(call))

    call, out = await until_answered(req.receive, answer())
    if not call.stream:
        await send_bytes(send, 200, out, metered_headers(req.request_id, call.meter))
        return
    headers = call_headers(req.request_id)
    headers.append((b"x-aicredits-overhead-ms", f"{call.meter.overhead_ms():.3f}".encode()))
    await stream_response(send, req.receive, call.meter, out, headers)
