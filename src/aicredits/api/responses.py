"""POST /v1/responses (OpenAI Responses API; native for OpenAI models, translated for the others)."""

from __future__ import annotations

from aicredits.api.chat import opened_call
from aicredits.api.http import Request


async def responses(gw, req: Request, send) -> None:
    await opened_call(gw, req, send, gw.responses, lambda call: call.meter, lambda call, events: events)
