"""The lifespan of one process: start-up (the services built, the cache's entries read, the
settle journal replayed, the background tasks started) and shutdown (the requests still running
given time to send their cut events and settle, the tasks stopped, the services closed), and the
ASGI lifespan protocol that runs them (docs/operations.md, "Graceful restarts")."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aicredits.api.dispatch import Dispatcher
from aicredits.api.http import STOP_GRACE_SECONDS, Receive, Send
from aicredits.settings import Settings
from aicredits.wiring import Services, build_services
from aicredits.wiring.routes import build_dispatcher

log = logging.getLogger("aicredits")


@dataclass
class Running:
    """A started process: its services, its dispatcher and its background tasks."""
    services: Services
    dispatcher: Dispatcher
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def start(settings: Settings, metrics_dir: str | None) -> Running:
    services = await build_services(settings, metrics_dir)
    running = Running(services, build_dispatcher(services))
    tasks = running.tasks
    if services.cache is not None:
        try:
            await services.cache.refresh()      # what earlier runs and other processes stored
        except Exception:
            log.warning("cache: could not read the stored entries at start", exc_info=True)
        tasks.append(asyncio.create_task(services.cache.follow_forever()))
    try:   # settlements a previous run could not write (the sweeper keeps retrying them)
        await services.billing.replay_journal()
    except Exception:  # serving starts anyway; the sweeper replays the journal again
        log.exception("replaying the settle journal at start failed")
    tasks.append(asyncio.create_task(services.billing.renew_forever()))
    tasks.append(asyncio.create_task(services.billing.sweep_forever()))
    if services.billing.quota is not None:   # the batch settle of quota slices, every 0.05 s
        tasks.append(asyncio.create_task(services.billing.quota.run_forever()))
    if metrics_dir:   # every second: this worker's counts and gauges to its files, for any scrape
        tasks.append(asyncio.create_task(services.metrics.sample_forever()))
    # start-up objects live as long as the process: keep the collector from rescanning them
    # (docs/performance.md: full collections were 12-17 % of wall time under load)
    gc.collect()
    gc.freeze()
    return running


async def stop(running: Running) -> None:
    # uvicorn calls this once its drain time (AICREDITS_DRAIN_SECONDS) is over, right after
    # cancelling the requests still running: let them send their cut events and settle first
    inflight = running.dispatcher.inflight
    if inflight:
        await asyncio.wait(set(inflight), timeout=STOP_GRACE_SECONDS * 2)
    for t in running.tasks:
        t.cancel()
    await running.services.close()


async def serve_lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]],
                         shutdown: Callable[[], Awaitable[None]]) -> None:
    """The ASGI lifespan protocol: startup, then shutdown, each answered to the server."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
