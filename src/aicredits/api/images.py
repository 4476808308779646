"""Placeholder: replaced by the images endpoint implementation."""

from __future__ import annotations

from aicredits.api.http import Request
from aicredits.errors import NotFound


async def images_generations(gw, req: Request, send) -> None:
    raise NotFound(f"{req.scope['path']} is not served by this gateway yet.")
