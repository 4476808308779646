"""POST /v1/images/generations."""

from __future__ import annotations

from aicredits.api.chat import json_call
from aicredits.api.http import Request


async def images_generations(gw, req: Request, send) -> None:
    await json_call(gw, req, send, gw.images.create)
