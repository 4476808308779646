"""Requests in flight per API key, in this process's memory (ports.InFlight)."""

from __future__ import annotations


class MemoryInFlight:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def enter_now(self, key_id: str, limit: int) -> bool:
        n = self._counts.get(key_id, 0)
        if n >= limit:
            return False
        self._counts[key_id] = n + 1
        return True

    def leave_now(self, key_id: str) -> None:
        n = self._counts.get(key_id, 0) - 1
        if n > 0:
            self._counts[key_id] = n
        else:
            self._counts.pop(key_id, None)

    async def enter(self, key_id: str, limit: int) -> object | None:
        return True if self.enter_now(key_id, limit) else None

    async def leave(self, key_id: str, token: object) -> None:
        self.leave_now(key_id)
