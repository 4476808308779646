"""The admission of a billable call: its key (401 unless valid) within its concurrency cap (429),
before the body is read. The slot is given back when the request ends (api/dispatch.py)."""

from __future__ import annotations

from aicredits.api.http import Request
from aicredits.ports import KeyAuth
from aicredits.services.concurrency import KeyConcurrency, Slot
from aicredits.services.keys import KeyAuthenticator


class Admission:
    __slots__ = ("concurrency", "keys")

    def __init__(self, keys: KeyAuthenticator, concurrency: KeyConcurrency) -> None:
        self.keys = keys
        self.concurrency = concurrency

    async def admit(self, req: Request) -> KeyAuth:
        auth = await self.keys.authenticate(req.authorization())
        req.slot = await self.concurrency.enter(auth)
        return auth

    async def release(self, slot: Slot) -> None:
        await self.concurrency.leave(slot)
