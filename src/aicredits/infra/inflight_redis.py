"""Requests in flight per API key in Redis, shared by every gateway process and host
(ports.InFlight).

One sorted set per key, `<prefix>inflight:<key id>`: a member per request in flight, scored with
the time it expires (Redis's own clock, in ms). Entering is one Lua script: drop expired members,
count, add when under the limit, set the set's expiry; leaving removes the member. A process that
dies holding slots frees them when they expire: `ttl_seconds` after they were taken (the longest
a request can run, and a minute: wiring/ passes the body timeout + AICREDITS_MAX_REQUEST_SECONDS + 60).

Fail-open as the rate limiter is (infra/ratelimit_redis.py): when Redis does not answer, the
request is counted in this process's memory instead (so each process still caps the key), a
warning is logged once per outage, and Redis is not asked again for a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

import logging
import time
import uuid

from aicredits.infra.inflight_memory import MemoryInFlight

log = logging.getLogger("aicredits.ratelimit")
SKIP_AFTER_ERROR_SECONDS = 1.0
LOCAL = "local"   # the token of a request counted in this process while Redis failed

# KEYS[1] the key's set; ARGV[1] limit, ARGV[2] ttl ms, ARGV[3] member. Returns 1 admitted, 0 not.
ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


class RedisInFlight:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._prefix = prefix + "inflight:"
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._enter = redis.register_script(ENTER)
        self._local = MemoryInFlight()
        self._skip_until = 0.0
        self._down = False

    def _failed(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + SKIP_AFTER_ERROR_SECONDS
        if not self._down:
            self._down = True
            log.warning("per-key concurrency counted per process: Redis failed (%s: %s)", type(exc).__name__, exc)

    async def enter(self, key_id: str, limit: int) -> object | None:
        if not self._down or time.monotonic() >= self._skip_until:
            member = uuid.uuid4().hex
            try:
                ok = await self._enter(keys=[self._prefix + key_id], args=[limit, self._ttl_ms, member])
            except Exception as exc:  # noqa: BLE001 - fail-open to this process's own count
                self._failed(exc)
            else:
                if self._down:
                    self._down = False
                    log.warning("per-key concurrency shared again: Redis answers")
                return member if ok else None
        return LOCAL if self._local.enter_now(key_id, limit) else None

    async def leave(self, key_id: str, token: object) -> None:
        if token == LOCAL:
            self._local.leave_now(key_id)
            return
        try:
            await self._redis.zrem(self._prefix + key_id, str(token))
        except Exception as exc:  # noqa: BLE001 - the member expires on its own
            self._failed(exc)
