"""The per-key cap on requests in flight (AICREDITS_KEY_MAX_CONCURRENT): a key past it gets a 429
with Retry-After before its body is read, so one client cannot fill a process with its calls.

Counted in this process's memory, or with AICREDITS_REDIS_URL in Redis, shared by every process
(infra/inflight_*.py). Without the setting nothing is counted: the check is one comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from aicredits.errors import RateLimited
from aicredits.ports import InFlight, KeyAuth


@dataclass(frozen=True)
class Slot:
    key_id: str
    token: object


class KeyConcurrency:
    def __init__(self, counter: InFlight, limit: int | None) -> None:
        self.counter = counter
        self.limit = limit

    async def enter(self, auth: KeyAuth) -> Slot | None:
        """The request's slot (None when there is no cap), or a 429."""
        if self.limit is None or auth.key_id is None:    # (None: the gateway's own calls)
            return None
        token = await self.counter.enter(auth.key_id, self.limit)
        if token is None:
            raise RateLimited(f"Too many requests in flight: this API key may have {self.limit} at once "
                              "(the gateway's limit per key). Retry when one has finished.", retry_after=1)
        return Slot(auth.key_id, token)

    async def leave(self, slot: Slot) -> None:
        await self.counter.leave(slot.key_id, slot.token)
