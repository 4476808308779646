"""The overview page: balance, keys, a first call to copy."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aicredits.web.core import context, render, signed_in


@signed_in
async def home(request: Request) -> Response:
    ctx = context(request)
    summary = await ctx.overview.of(request.state.user.id)
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    return await render(request, "home.html", summary=summary, api_base=f"{base}/v1")


routes = [Route("/", home, methods=["GET"], name="home")]
