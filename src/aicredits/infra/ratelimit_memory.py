"""Rate-limit counters in this process's memory (no Redis configured).

Correct for one process. With `aicredits serve --workers N` and no Redis, each worker keeps its
own counters, so a key can get up to N times its limits (docs/rate-limits.md).
"""

from __future__ import annotations

import time

from aicredits.domain.ratelimit import Counters, RateState, Refused, position, rate_state

PRUNE_ABOVE = 10_000   # keys with counters; beyond it, idle ones are dropped


class MemoryRateLimiter:
    def __init__(self, window_seconds: float) -> None:
        self.window_ms = max(1, round(window_seconds * 1000))
        self._keys: dict[str, Counters] = {}

    def _counters(self, key_id: str, now_ms: int) -> Counters:
        c = self._keys.get(key_id)
        if c is None:
            if len(self._keys) >= PRUNE_ABOVE:
                self._prune(now_ms)
            c = self._keys[key_id] = Counters(window=now_ms // self.window_ms)
        return c

    def _prune(self, now_ms: int) -> None:
        """Drop keys whose counters are from before the previous window: they estimate zero."""
        oldest = now_ms // self.window_ms - 1
        for key_id in [k for k, c in self._keys.items() if c.window < oldest]:
            del self._keys[key_id]

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> Refused | None:
        return (await self.check(key_id, rpm, tpm))[0]

    async def check(self, key_id: str, rpm: int | None, tpm: int | None) -> tuple[Refused | None, RateState | None]:
        now_ms = int(time.time() * 1000)
        return self._counters(key_id, now_ms).check(now_ms, self.window_ms, rpm, tpm)

    async def peek(self, key_id: str, rpm: int | None, tpm: int | None) -> RateState | None:
        """The key's limits as they stand, nothing counted (a call that is not limited)."""
        now_ms = int(time.time() * 1000)
        c = self._counters(key_id, now_ms)
        c.check(now_ms, self.window_ms, None, None)   # rolls the windows; decides and counts nothing
        index, elapsed = position(now_ms, self.window_ms)
        return rate_state(elapsed if index >= c.window else 0, self.window_ms, rpm, tpm, c.prev_requests,
                          c.requests, c.prev_tokens, c.tokens)

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        now_ms = int(time.time() * 1000)
        self._counters(key_id, now_ms).add_tokens(now_ms, self.window_ms, tokens)
