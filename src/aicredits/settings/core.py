"""The gateway's core settings: the database and Redis, the exchange rate and markup, the
upstream timeouts, retries and breakers, the request limits (docs/operations.md, "Hostile
clients") and the logs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from aicredits.domain.ratelimit import MAX_WINDOW_SECONDS
from aicredits.settings.types import (
    Count,
    LogLevel,
    Seconds,
    Strict,
    check_redis_url,
    decimal,
    lower,
    not_bool,
)

DEFAULT_DB_URL = "sqlite:///aicredits.db"   # only for a Settings built by hand; load_settings() uses default_database_url
DEFAULT_DB_FILE = "aicredits.db"             # in the state directory, when no database URL is set


class CoreSettings(Strict):
    database_url: str = DEFAULT_DB_URL
    redis_url: Annotated[str | None, BeforeValidator(check_redis_url)] = None
    redis_prefix: str = "aicredits:"             # every Redis key the gateway writes starts with this
    redis_timeout: Seconds = 0.5                 # seconds to connect to Redis or wait for an answer
    rate_window_seconds: Annotated[Seconds, Field(le=MAX_WINDOW_SECONDS)] = 60.0   # per-key rpm/tpm window
    usd_inr: Annotated[str, decimal("positive")] = "88"
    markup: Annotated[str, decimal("non-negative")] = "0"
    upstream_connect_timeout: Seconds = 5.0
    upstream_timeout: Seconds = 120.0
    stream_idle_timeout: Seconds = 60.0
    max_request_seconds: Seconds = 900.0         # the longest call, on every endpoint (a timer)
    hold_lease_seconds: Seconds = 30.0           # a hold's lease; its process renews it every lease / 6
    settle_retry_seconds: Seconds = 15.0         # a failed settle is retried this long, then journaled
    state_dir: str | None = None                 # the settle journal's home (None: see journal_dir)
    # quota slices (docs/billing.md, "Quota slices"): calls authorized in memory against a slice of
    # the wallet reserved in advance, charges settled in batches
    quota_slices: bool = True
    quota_deferred: bool = False                 # on: answers before their batch settle, slices kept while idle
    quota_min_running: Count = 16                # a slice once this many calls of a key run at once in a process
    quota_slice_calls: Count = 64                # a slice is up to this many of a call's hold
    quota_min_calls: Count = 16                  # a wallet with less than this many holds: per-call holds
    quota_flush_seconds: Annotated[Seconds, Field(le=5)] = 0.05   # the batch settle's interval
    db_timeout: Seconds = 5.0                    # PostgreSQL: the longest one operation waits (then 503)
    sqlite_busy_timeout: Seconds = 10.0          # SQLite: the longest a statement waits for another's write lock
    ready_timeout: Seconds = 2.0                 # /health/ready answers within this
    drain_seconds: Annotated[float, BeforeValidator(not_bool), Field(ge=0, allow_inf_nan=False)] = 25.0
    max_body_bytes: Count = 40 * 1024 * 1024
    # hostile clients (docs/operations.md, "Hostile clients"): what one process lets bodies,
    # keys and connections take
    body_bytes_in_flight: Count = 256 * 1024 * 1024   # bodies being received and parsed at once
    key_max_concurrent: Count | None = None          # requests in flight per API key (None: no cap)
    header_timeout: Seconds = 10.0                   # a request's line and headers, from its first byte
    body_timeout: Seconds = 60.0                     # a request's whole body, from its headers' end
    max_connections: Count = 1000                    # open client connections per process
    retries: Annotated[int, BeforeValidator(not_bool), Field(ge=0)] = 2
    retry_base_delay: Seconds = 0.2
    retry_max_delay: Seconds = 2.0
    breaker_failures: Count = 5
    breaker_cooldown: Seconds = 30.0
    log_level: LogLevel = "INFO"
    log_format: Annotated[Literal["auto", "json", "text"], BeforeValidator(lower)] = "auto"   # auto: text on a tty
    access_log: bool = True

    def check_core(self) -> None:
        """The rules across core settings (GatewaySettings runs every idea's check)."""
        if self.body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(f"AICREDITS_BODY_BYTES_IN_FLIGHT ({self.body_bytes_in_flight}) must be at least "
                             f"AICREDITS_MAX_BODY_BYTES ({self.max_body_bytes}), or the largest body is never "
                             "accepted")
