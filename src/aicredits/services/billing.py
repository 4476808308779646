"""Holds and charges around every call, model resolution, and the hold sweeper."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aicredits.domain.catalog import Catalog
from aicredits.domain.reservation import Refusal
from aicredits.errors import AuthenticationFailed, InsufficientCredits
from aicredits.ports import BillingStore, HoldRequest, KeyAuth, KeyRevoked, Settlement, SettleResult

log = logging.getLogger("aicredits.billing")
T = TypeVar("T")


class Billing:
    def __init__(self, store: BillingStore, catalog: Catalog, *, hold_ttl_seconds: float) -> None:
        self.store = store
        self.catalog = catalog
        self._hold_ttl_ms = int(hold_ttl_seconds * 1000)
        self._background: set[asyncio.Task] = set()
        self.on_revoked = None   # called with a key id found revoked while holding

    async def reserve(self, call_id: str, auth: KeyAuth, planner: Callable):
        now = int(time.time() * 1000)
        req = HoldRequest(call_id, auth.account_id, auth.key_id, now, now + self._hold_ttl_ms, planner)
        fut = asyncio.ensure_future(self.store.reserve(req))
        try:
            return await asyncio.shield(fut)
        except Refusal as exc:
            raise InsufficientCredits(exc.message) from None
        except KeyRevoked:
            if self.on_revoked is not None:
                self.on_revoked(auth.key_id)
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.") from None
        except asyncio.CancelledError:
            # the caller went away while the hold was being made: release it once it exists
            fut.add_done_callback(lambda f: self._release_orphan(f, auth, call_id))
            raise

    def _release_orphan(self, fut: asyncio.Future, auth: KeyAuth, call_id: str) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        usage = {"call_id": call_id, "request_id": call_id, "account_id": auth.account_id, "key_id": auth.key_id,
                 "model": "", "provider": "", "deployment": "", "endpoint": "chat", "stream": False,
                 "prompt_tokens": 0, "completion_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
                 "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "units": 0, "latency_ms": 0,
                 "overhead_ms": 0, "status": 499, "cache": "bypass", "end_state": "client_disconnect",
                 "error": None, "created_at": int(time.time() * 1000)}
        self.spawn(self.store.settle(Settlement(call_id, auth.account_id, auth.key_id, 0, usage)))

    async def settle(self, s: Settlement) -> SettleResult:
        return await self.store.settle(s)

    async def shielded(self, aw: Awaitable[T]) -> T:
        """Run to completion even if the calling task is cancelled (money must settle)."""
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(task)

    def spawn(self, aw: Awaitable) -> None:
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def sweep_forever(self, every: float = 30.0) -> None:
        while True:
            try:
                released = await self.store.sweep(int(time.time() * 1000))
                if released:
                    log.warning("released %d expired holds (their calls never settled)", released)
            except Exception:  # keep sweeping; the next round retries
                log.exception("hold sweep failed")
            await asyncio.sleep(every)
