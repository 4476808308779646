"""Rate-limit counters in Redis, shared by every gateway process and host.

One hash per limited key, `<prefix>ratelimit:<key id>`, holding the current window's index and
the request and token counts of the current and previous windows (domain/ratelimit.py). Each
check is one Lua script: it reads Redis's own clock (so every host agrees on the window), rolls
the windows, decides, counts, and sets the expiry, atomically. Adding a call's tokens is another.

Fail-open: when Redis does not answer (down, timeout, any error), requests are admitted without
counting, a warning is logged once per outage, and Redis is not asked again for a second (so an
outage costs no time per request). /health/ready reports Redis as unavailable meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

import logging
import time

from aicredits.domain.ratelimit import RateState, Refused, decide, rate_state

log = logging.getLogger("aicredits.ratelimit")
SKIP_AFTER_ERROR_SECONDS = 1.0

# the windows as Counters.roll moves them; KEYS[1] the key's hash, ARGV[1] the window in ms
_ROLL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local idx = math.floor(now / win)
local elapsed = now - idx * win
local h = redis.call('HMGET', KEYS[1], 'w', 'rc', 'rp', 'tc', 'tp')
local w = tonumber(h[1]) or idx
local rc, rp = tonumber(h[2]) or 0, tonumber(h[3]) or 0
local tc, tp = tonumber(h[4]) or 0, tonumber(h[5]) or 0
if idx == w + 1 then
  rp, tp, rc, tc = rc, tc, 0, 0
elseif idx > w + 1 then
  rp, tp, rc, tc = 0, 0, 0, 0
elseif idx < w then
  idx, elapsed = w, 0
end
"""

_SAVE = """
redis.call('HSET', KEYS[1], 'w', idx, 'rc', rc, 'rp', rp, 'tc', tc, 'tp', tp)
redis.call('PEXPIRE', KEYS[1], 2 * win + 1000)
"""

# ARGV[2] rpm, ARGV[3] tpm (0: not limited). Returns {admitted, elapsed, rc, rp, tc, tp}: the
# counts as they were when deciding.
CHECK = _ROLL + """
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local ok = 1
if rpm > 0 and rp * (win - elapsed) + rc * win > (rpm - 1) * win then ok = 0 end
if tpm > 0 and tp * (win - elapsed) + tc * win > tpm * win - 1 then ok = 0 end
local seen = rc
if ok == 1 and rpm > 0 then rc = rc + 1 end
""" + _SAVE + """
return {ok, elapsed, seen, rp, tc, tp}
"""

# ARGV[2] tokens to add
ADD_TOKENS = _ROLL + """
tc = tc + tonumber(ARGV[2])
""" + _SAVE + """
return 1
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str, window_seconds: float) -> None:
        self._redis = redis
        self._prefix = prefix + "ratelimit:"
        self.window_ms = max(1, round(window_seconds * 1000))
        self._check = redis.register_script(CHECK)
        self._add = redis.register_script(ADD_TOKENS)
        self._skip_until = 0.0
        self._down = False

    def _available(self) -> bool:
        return not self._down or time.monotonic() >= self._skip_until

    def _failed(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + SKIP_AFTER_ERROR_SECONDS
        if not self._down:
            self._down = True
            log.warning("rate limits not enforced: Redis failed (%s: %s); requests are admitted "
                        "uncounted until it answers", type(exc).__name__, exc)

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.warning("rate limits enforced again: Redis answers")

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> Refused | None:
        return (await self.check(key_id, rpm, tpm))[0]

    async def check(self, key_id: str, rpm: int | None, tpm: int | None) -> tuple[Refused | None, RateState | None]:
        """admit(), and the key's limits after it (None while Redis fails: nothing is known)."""
        if not self._available():
            return None, None
        try:
            ok, elapsed, rc, rp, tc, tp = await self._check(keys=[self._prefix + key_id],
                                                            args=[self.window_ms, rpm or 0, tpm or 0])
        except Exception as exc:  # noqa: BLE001 - fail-open: no Redis problem may fail a call
            self._failed(exc)
            return None, None
        self._answered()
        elapsed, rc, rp, tc, tp = int(elapsed), int(rc), int(rp), int(tc), int(tp)
        if ok:
            return None, rate_state(elapsed, self.window_ms, rpm, tpm, rp, rc + (1 if rpm else 0), tp, tc)
        refused = decide(elapsed, self.window_ms, rpm, tpm, rp, rc, tp, tc)
        state = rate_state(elapsed, self.window_ms, rpm, tpm, rp, rc, tp, tc)
        return refused or Refused((("rpm", rpm),) if rpm else (("tpm", tpm or 0),), 1), state

    async def peek(self, key_id: str, rpm: int | None, tpm: int | None) -> RateState | None:
        """The key's limits as they stand, nothing counted: the check's script with no limit
        (it decides nothing and counts nothing). None while Redis fails."""
        if not self._available():
            return None
        try:
            _, elapsed, rc, rp, tc, tp = await self._check(keys=[self._prefix + key_id], args=[self.window_ms, 0, 0])
        except Exception as exc:  # noqa: BLE001 - fail-open: no headers, no failure
            self._failed(exc)
            return None
        self._answered()
        return rate_state(int(elapsed), self.window_ms, rpm, tpm, int(rp), int(rc), int(tp), int(tc))

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        if not self._available():
            return
        try:
            await self._add(keys=[self._prefix + key_id], args=[self.window_ms, tokens])
        except Exception as exc:  # noqa: BLE001 - the call is settled; its tokens go uncounted
            self._failed(exc)
            return
        self._answered()
