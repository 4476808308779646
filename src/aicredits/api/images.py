"""POST /v1/images/generations."""

from __future__ import annotations

from aicredits.api.chat import metered_headers
from aicredits.api.http import Request, send_bytes, until_answered


async def images_generations(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    raw, meter = await until_answered(
        req.receive, gw.images.create(body, auth, req.request_id, req.scope["aicredits.started"]))
    await send_bytes(send, 200, raw, metered_headers(req.request_id, meter))
