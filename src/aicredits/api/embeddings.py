"""POST /v1/embeddings."""

from __future__ import annotations

from aicredits.api.chat import metered_headers
from aicredits.api.http import Request, send_bytes, until_answered


async def embeddings(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    raw, meter = await until_answered(
        req.receive, gw.embeddings.create(body, auth, req.request_id, req.scope["aicredits.started"]))
    await send_bytes(send, 200, raw, metered_headers(req.request_id, meter))
