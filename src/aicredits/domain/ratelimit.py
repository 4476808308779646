"""Per-key rate limits (rpm, tpm) as sliding-window counters: the rules, without a clock or I/O.

Time is cut into fixed windows of `window_ms` milliseconds, aligned to the Unix epoch. A key's
counter keeps the count of the current window and of the one before it. Its estimate of the
last `window_ms` (the sliding window) is

    estimate = previous × (window_ms − elapsed) / window_ms + current

where `elapsed` is how far the clock is into the current window: the previous window's count is
taken as spread evenly over that window, and the part of it still inside the sliding window counts.

- rpm: a request is admitted when estimate + 1 <= rpm (it counts itself); admitted, it adds 1.
- tpm: a request is admitted when estimate < tpm (its own tokens are unknown before the call);
  after the call its billed tokens (prompt + completion) are added.

Every comparison is done in integers, multiplied through by `window_ms`, so the Redis limiter's Lua
script (infra/ratelimit_redis.py) and the in-process one decide exactly alike.
docs/rate-limits.md describes the behaviour for operators and clients.
"""

from __future__ import annotations

from dataclasses import dataclass

# the largest rpm or tpm a key may carry, and the longest window: every product the decision
# computes (count x window_ms) stays below 2**53, exact in the Lua script's doubles too
MAX_LIMIT = 1_000_000_000
MAX_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Refused:
    """Why a request is refused: the limits it is over ("rpm", "tpm"), their values, and the whole
    seconds until the estimate has fallen far enough for it to pass (if nothing else arrives)."""
    limits: tuple[tuple[str, int], ...]
    retry_after: int


@dataclass
class Counters:
    """One key's two windows for requests and for tokens."""
    window: int = 0           # index of the current window: now_ms // window_ms
    requests: int = 0
    prev_requests: int = 0
    tokens: int = 0
    prev_tokens: int = 0

    def roll(self, index: int) -> None:
        """Move to window `index` (a clock stepping back keeps the current window)."""
        if index == self.window + 1:
            self.prev_requests, self.prev_tokens = self.requests, self.tokens
            self.requests = self.tokens = 0
        elif index > self.window + 1:
            self.prev_requests = self.prev_tokens = self.requests = self.tokens = 0
        self.window = max(self.window, index)

    def admit(self, now_ms: int, window_ms: int, rpm: int | None, tpm: int | None) -> Refused | None:
        """Decide one request at `now_ms`; an admitted request is counted (when rpm is set)."""
        return self.check(now_ms, window_ms, rpm, tpm)[0]

    def check(self, now_ms: int, window_ms: int, rpm: int | None,
              tpm: int | None) -> tuple[Refused | None, RateState]:
        """admit(), and the key's limits as they stand after it (its response headers)."""
        index, elapsed = position(now_ms, window_ms)
        self.roll(index)
        if index < self.window:
            elapsed = 0
        refused = decide(elapsed, window_ms, rpm, tpm, self.prev_requests, self.requests,
                         self.prev_tokens, self.tokens)
        if refused is None and rpm is not None:
            self.requests += 1
        return refused, rate_state(elapsed, window_ms, rpm, tpm, self.prev_requests, self.requests,
                                   self.prev_tokens, self.tokens)

    def add_tokens(self, now_ms: int, window_ms: int, tokens: int) -> None:
        self.roll(position(now_ms, window_ms)[0])
        self.tokens += tokens


def position(now_ms: int, window_ms: int) -> tuple[int, int]:
    """(index of the window holding now_ms, milliseconds elapsed in it)."""
    index = now_ms // window_ms
    return index, now_ms - index * window_ms


def scaled_estimate(prev: int, curr: int, elapsed: int, window_ms: int) -> int:
    """estimate × window_ms, an exact integer."""
    return prev * (window_ms - elapsed) + curr * window_ms


def request_bound(rpm: int, window_ms: int) -> int:
    """A request passes while scaled_estimate <= this (estimate + 1 <= rpm)."""
    return (rpm - 1) * window_ms


def token_bound(tpm: int, window_ms: int) -> int:
    """A request passes while scaled_estimate <= this (estimate < tpm)."""
    return tpm * window_ms - 1


def _earliest(prev: int, curr: int, window_ms: int, bound: int) -> int | None:
    """The first millisecond of a window holding (prev, curr) at which the scaled estimate is
    <= bound, or None when it is not within that window."""
    if curr * window_ms > bound:
        return None
    if prev == 0:
        return 0
    return max(0, window_ms - (bound - curr * window_ms) // prev)


def wait_ms(prev: int, curr: int, elapsed: int, window_ms: int, bound: int) -> int:
    """Milliseconds from now until the scaled estimate is <= bound, if nothing more is counted.
    The estimate never rises as time passes, so any later moment also passes."""
    e = _earliest(prev, curr, window_ms, bound)
    if e is not None:
        return max(0, e - elapsed)
    # not in this window: in the next one, today's count is the previous window's
    e = _earliest(curr, 0, window_ms, bound)
    return (window_ms - elapsed) + (window_ms if e is None else e)


def decide(elapsed: int, window_ms: int, rpm: int | None, tpm: int | None,
           prev_requests: int, requests: int, prev_tokens: int, tokens: int) -> Refused | None:
    """None when a request passes both limits; else the limits it is over and how long to wait
    (until both pass: each estimate only falls while nothing is added)."""
    over: list[tuple[str, int]] = []
    wait = 0
    if rpm is not None:
        bound = request_bound(rpm, window_ms)
        if scaled_estimate(prev_requests, requests, elapsed, window_ms) > bound:
            over.append(("rpm", rpm))
            wait = max(wait, wait_ms(prev_requests, requests, elapsed, window_ms, bound))
    if tpm is not None:
        bound = token_bound(tpm, window_ms)
        if scaled_estimate(prev_tokens, tokens, elapsed, window_ms) > bound:
            over.append(("tpm", tpm))
            wait = max(wait, wait_ms(prev_tokens, tokens, elapsed, window_ms, bound))
    if not over:
        return None
    return Refused(tuple(over), retry_after_seconds(wait))


def retry_after_seconds(wait: int) -> int:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return max(1, -(-wait // 1000))


def per_window(window_ms: int) -> str:
    return "per minute" if window_ms == 60_000 else f"per {window_ms / 1000:g} s"


def refusal_message(refused: Refused, window_ms: int) -> str:
    """The 429's message: which limit, its value, when to retry (docs/errors.md lists them)."""
    per = per_window(window_ms)
    parts = []
    for name, value in refused.limits:
        if name == "rpm":
            parts.append(f"this API key's rpm limit is {value} requests {per}")
        else:
            parts.append(f"this API key's tpm limit is {value} tokens {per}, and its recent calls used them")
    return f"Rate limit reached: {'; '.join(parts)}. Retry after {refused.retry_after} s."


# ---------------------------------------------------------------- what the client is told
@dataclass(frozen=True)
class RateState:
    """A key's limits as its answer's x-ratelimit-* headers tell them (OpenAI's names), right
    after the check: each limit, what remains of it in the sliding window, and the milliseconds
    until the window is back to its initial state (the estimate at zero) if nothing else comes."""
    rpm: int | None
    tpm: int | None
    remaining_requests: int = 0
    remaining_tokens: int = 0
    reset_requests_ms: int = 0
    reset_tokens_ms: int = 0

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = []
        if self.rpm is not None:
            out += [(b"x-ratelimit-limit-requests", str(self.rpm).encode()),
                    (b"x-ratelimit-remaining-requests", str(self.remaining_requests).encode()),
                    (b"x-ratelimit-reset-requests", duration_text(self.reset_requests_ms).encode())]
        if self.tpm is not None:
            out += [(b"x-ratelimit-limit-tokens", str(self.tpm).encode()),
                    (b"x-ratelimit-remaining-tokens", str(self.remaining_tokens).encode()),
                    (b"x-ratelimit-reset-tokens", duration_text(self.reset_tokens_ms).encode())]
        return out


def _drained_ms(prev: int, curr: int, elapsed: int, window_ms: int) -> int:
    """Milliseconds until the estimate of (prev, curr) is zero, if nothing more is counted: the
    current count becomes the previous one next window and has faded out at its end."""
    if curr > 0:
        return window_ms - elapsed + window_ms
    if prev > 0:
        return window_ms - elapsed
    return 0


def rate_state(elapsed: int, window_ms: int, rpm: int | None, tpm: int | None, prev_requests: int,
               requests: int, prev_tokens: int, tokens: int) -> RateState:
    """The RateState of counts as they are after the check (the request counted if admitted)."""
    used_r = -(-scaled_estimate(prev_requests, requests, elapsed, window_ms) // window_ms)
    used_t = -(-scaled_estimate(prev_tokens, tokens, elapsed, window_ms) // window_ms)
    return RateState(rpm, tpm, max(0, (rpm or 0) - used_r), max(0, (tpm or 0) - used_t),
                     _drained_ms(prev_requests, requests, elapsed, window_ms),
                     _drained_ms(prev_tokens, tokens, elapsed, window_ms))


def duration_text(ms: int) -> str:
    """A duration as OpenAI's reset headers write it (Go's form): 0s, 250ms, 1.5s, 6m0s, 1h0m0s."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds
