"""POST /v1/embeddings."""

from __future__ import annotations

from aicredits.api.chat import json_call
from aicredits.api.http import Request


async def embeddings(gw, req: Request, send) -> None:
    await json_call(gw, req, send, gw.embeddings.create)
