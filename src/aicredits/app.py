"""The ASGI application: HTTP requests go to the dispatcher (api/dispatch.py, traced when a
collector is configured), lifespan events start and stop the process (lifespan.py). What it
serves with is built in one place, wiring/ (`Services`)."""

from __future__ import annotations

import os

from aicredits import logs
from aicredits.api.dispatch import traced
from aicredits.api.http import ASGIApp, Receive, Scope, Send
from aicredits.lifespan import Running, serve_lifespan, start, stop
from aicredits.settings import Settings, load_settings
from aicredits.wiring import Services


async def _not_started(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the gateway has not started: its ASGI lifespan startup (or startup()) comes first")


class Gateway:
    """One process's ASGI app (uvicorn's, or httpx's ASGITransport in the tests)."""

    def __init__(self, settings: Settings, metrics_dir: str | None = None) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir   # prometheus-client's multi-process directory (serve --workers N)
        self._running: Running | None = None
        self._http: ASGIApp = _not_started

    @property
    def running(self) -> Running:
        if self._running is None:
            raise RuntimeError("the gateway has not started")
        return self._running

    @property
    def services(self) -> Services:
        return self.running.services

    async def startup(self) -> None:
        running = self._running = await start(self.settings, self.metrics_dir)
        tracer = running.services.tracer
        self._http = running.dispatcher if tracer is None else traced(running.dispatcher, tracer)

    async def shutdown(self) -> None:
        if self._running is not None:
            await stop(self._running)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await serve_lifespan(receive, send, self.startup, self.shutdown)


def create_app(settings: Settings | None = None) -> Gateway:
    """The app of one `serve --workers N` worker process (uvicorn's factory): its logging is set
    up here, as `serve` does for a single process."""
    settings = settings or load_settings()
    logs.configure(settings.log_level, settings.access_log, settings.log_format)
    # set by `serve` before the workers start: every worker writes its metrics there
    from aicredits.infra.metrics import MULTIPROC_ENV
    return Gateway(settings, metrics_dir=os.environ.get(MULTIPROC_ENV) or None)
