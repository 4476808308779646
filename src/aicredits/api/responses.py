"""POST /v1/responses (OpenAI Responses API; native for OpenAI models, translated for the others)."""

from __future__ import annotations

from aicredits.api.chat import call_headers, metered_headers, stream_response
from aicredits.api.http import Request, send_bytes


async def responses(gw, req: Request, send) -> None:
    auth = await gw.keys.authenticate(req.authorization())
    body = await req.json(gw.settings.max_body_bytes)
    svc = gw.responses
    call = await svc.open(body, auth, req.request_id, req.scope["aicredits.started"])
    if not call.stream:
        raw = await svc.complete(call)
        await send_bytes(send, 200, raw, metered_headers(req.request_id, call.meter))
        return
    headers = call_headers(req.request_id)
    events = await svc.start_stream(call)
    headers.append((b"x-aicredits-overhead-ms", f"{call.meter.overhead_ms():.3f}".encode()))
    await stream_response(send, req.receive, call.meter, events, headers)
