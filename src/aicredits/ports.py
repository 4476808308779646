"""Interfaces the services use and store/infra implement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aicredits.domain.ratelimit import RateState, Refused


@dataclass(frozen=True)
class KeyAuth:
    key_id: str | None          # None: the gateway's own calls (the semantic cache's embedder)
    account_id: int
    name: str
    limit_micros: int | None
    rpm: int | None = None      # requests per rate window (None: unlimited)
    tpm: int | None = None      # billed tokens per rate window (None: unlimited)
    expires_at: int | None = None             # epoch ms after which the key is refused (None: never)
    models: tuple[str, ...] | None = None     # glob patterns of the models it may call (None: all)


class Plan(Protocol):
    """A planner's decision (domain/reservation.py's HoldPlan, or a fixed amount): what to hold."""

    @property
    def amount(self) -> int: ...


@dataclass(frozen=True)
class HoldRequest:
    call_id: str
    account_id: int
    key_id: str | None
    created_at: int
    expires_at: int
    # (available micros, key headroom micros or None) -> what to hold; raises Refusal
    planner: Callable[[int, int | None], Plan]


@dataclass(frozen=True)
class Settlement:
    call_id: str
    account_id: int
    key_id: str | None
    charge: int
    usage: dict          # a usage_records row (without id)
    note: str = ""


@dataclass(frozen=True)
class SettleResult:
    charged: int
    balance: int | None      # wallet balance after the charge (None: not known yet, see `pending`)
    available: int | None    # balance minus the holds still open (None: not known yet)
    pending: bool = False    # the database could not be reached: the settlement is in the journal


class KeyRevoked(Exception):
    pass


class StoreUnavailable(Exception):
    """The database did not answer within the store's timeout, or its connection failed: the
    operation did not happen (or its answer was lost; settling is idempotent, a hold so made is
    swept). Services answer 503 service_unavailable with Retry-After."""


class SettleJournal(Protocol):
    """Durable local storage of settlements the database did not take (infra/journal.py)."""

    def write(self, s: Settlement) -> None:
        """Store the settlement durably (fsync'd) before returning."""
    def pending(self) -> list[Settlement]:
        """Every settlement stored and not yet removed, by this process or any other."""
    def remove(self, call_id: str) -> None: ...
    def has(self, call_id: str) -> bool: ...


@dataclass(frozen=True)
class SliceView:
    """A quota slice and its wallet as one transaction left them (store/billing_sql.py):
    `granted` what this transaction added to the slice; `amount` the slice's hold now (0: it is
    gone); the wallet's balance and held; the key's headroom (limit - spent - held, None without a
    limit); `after`: a batch settle's calls and the balance each one's ledger entry left."""
    granted: int
    amount: int
    balance: int
    held: int
    key_headroom: int | None
    after: dict[str, int] = field(default_factory=dict)


class GrantLog(Protocol):
    """The grant journal of quota slices (infra/journal.py, GrantJournal): the charges of calls
    authorized against slices, one line each, written before the call's answer; a file whose
    process is gone is an orphan, replayed by any process on the same directory."""

    seq: int     # the current segment's number

    def append(self, record: dict[str, Any]) -> int:
        """Write one record whole; the segment's number (for `retire`)."""
    def sync(self) -> None:
        """fsync what was appended (called off the event loop)."""
    def retire(self, oldest_pending: int | None) -> None:
        """Delete the rotated segments older than the oldest charge still to land."""
    def rotate_if_full(self, running: list[dict[str, Any]]) -> None:
        """Start a new segment when this one is full, carrying `running` over."""
    def close(self, *, landed: bool) -> None: ...
    def orphans(self) -> list[tuple[int, Path]]:
        """Files of processes that are gone, each opened and locked: (fd, path)."""
    def read(self, fd: int, path: Path) -> list[dict[str, Any]]: ...
    def done(self, fd: int, path: Path, *, remove: bool) -> None: ...


class RateLimiter(Protocol):
    """Per-key rpm/tpm counters (infra/: in process memory, or in Redis shared by every process)."""

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> Refused | None:
        """Count one request, or say why it is refused (then nothing is counted)."""
    async def check(self, key_id: str, rpm: int | None, tpm: int | None) -> tuple[Refused | None, RateState | None]:
        """admit(), and the key's limits as they stand after it (None when not known)."""
    async def peek(self, key_id: str, rpm: int | None, tpm: int | None) -> RateState | None:
        """The key's limits as they stand, nothing counted (None when not known)."""
    async def add_tokens(self, key_id: str, tokens: int) -> None:
        """Add a settled call's billed tokens to the key's tpm window."""


class InFlight(Protocol):
    """Requests in flight per API key (infra/: in process memory, or in Redis shared by every
    process), for the per-key concurrency cap (services/concurrency.py)."""

    async def enter(self, key_id: str, limit: int) -> object | None:
        """Count one more request of the key and return its token, or None (nothing counted) when
        the key already has `limit` in flight."""
    async def leave(self, key_id: str, token: object) -> None:
        """The request of `token` has ended."""


class BillingStore(Protocol):
    """The request hot path's persistence: key lookup, hold, settle. One transaction each."""

    async def find_key(self, key_hash: str) -> KeyAuth | None: ...
    async def reserve(self, req: HoldRequest) -> Plan:
        """Hold the planner's amount; the plan."""
    async def settle(self, s: Settlement) -> SettleResult:
        """Idempotent by call id: settling a settled call again changes nothing and returns its charge."""
    async def record(self, rows: list[dict]) -> None:
        """Write usage rows of refused calls (zero cost, no hold): nothing else changes."""
    async def renew(self, expires_at: int, call_ids: list[str], progress: list[tuple[str, int, str]]) -> None:
        """Extend these holds' leases to `expires_at`; `progress`: (call id, accrued charge, usage row
        JSON) of those whose progress changed."""
    async def sweep(self, now_ms: int) -> int:
        """Settle every hold whose lease expired from its recorded progress; how many."""
    # quota slices (services/quota.py), one transaction each
    async def grant(self, slice_id: str, account_id: int, key_id: str | None,
                    want: Callable[[int, int | None], int], now: int, expires_at: int) -> SliceView:
        """Add `want(available, key headroom)` to the slice (within both), creating it if needed."""
    async def charge_slice(self, slice_id: str, account_id: int, key_id: str | None,
                           items: list[Settlement], close: bool = False) -> SliceView:
        """Settle these calls of the slice (idempotent by call id); `close`: then give the rest
        of the slice back, in the same transaction."""
    async def shrink_slice(self, slice_id: str, account_id: int, key_id: str | None, amount: int) -> SliceView:
        """Give `amount` of the slice back to the wallet."""
    async def release_slice(self, slice_id: str, account_id: int) -> int:
        """Give the whole slice back; the amount."""
    async def credits(self, account_id: int, key_id: str | None) -> dict: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...
    async def holds_outstanding(self) -> tuple[int, int]:
        """(count, micro-INR) of the holds not yet settled, for /metrics."""
    def pool_stats(self) -> dict:
        """This process's connections: size, in_use, max, waiting (and acquires, wait_seconds)."""


class Mailer(Protocol):
    """Sends plain-text mail (infra/mail.py: SMTP)."""

    async def send(self, to: str, subject: str, text: str) -> None: ...
