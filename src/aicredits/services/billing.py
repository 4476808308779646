"""Holds and charges around every call: leases, settling (retried, else journaled), the sweeper.

Leases: a hold's `expires_at` is a lease this process renews every `lease / 6` seconds while the
call runs (with the charge its output has accrued so far), so a running call's hold is never
swept, however long the call. When the process dies, its leases run out and any gateway's
sweeper settles those holds from the recorded progress within `lease + lease / 6` seconds.

Settling: retried with backoff for `settle_retry_seconds`; a settlement the database still does
not take is written to the journal (fsync'd), which is replayed at start and on every sweep
until the database has it. Settling is idempotent by call id, so a retry or a replay of a
settlement that did land changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import orjson

from aicredits.domain.reservation import Refusal
from aicredits.domain.usage import usage_row
from aicredits.errors import AuthenticationFailed, InsufficientCredits, ServiceUnavailable
from aicredits.ports import (
    BillingStore,
    HoldRequest,
    KeyAuth,
    KeyRevoked,
    Plan,
    SettleJournal,
    Settlement,
    SettleResult,
    StoreUnavailable,
)
from aicredits.services.quota import Quota

log = logging.getLogger("aicredits.billing")
T = TypeVar("T")
_P = TypeVar("_P", bound=Plan)


@dataclass
class Lease:
    """A hold this process keeps alive, and how to read its call's progress: `accrued()` the
    charge so far, `row()` the usage row the sweeper writes with it if this process dies."""
    accrued: Callable[[], int] | None = None
    row: Callable[[], dict] | None = None
    reported: int = -1      # the accrued charge last written to the database
    born: float = field(default_factory=time.monotonic)


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway cannot reach its database right now, so the call was not made and "
                              "nothing was charged. Retry after the Retry-After delay.", retry_after=2)


class Billing:
    def __init__(self, store: BillingStore, *, lease_seconds: float = 30.0,
                 journal: SettleJournal | None = None, settle_retry_seconds: float = 15.0,
                 max_call_seconds: float = 900.0, quota: Quota | None = None) -> None:
        self.store = store
        self.quota = quota      # quota slices (services/quota.py), when AICREDITS_QUOTA_SLICES is on
        self.lease_seconds = lease_seconds
        # a lease older than this belongs to a call that can no longer be running (the deadline
        # ended it, and its settle had its retries): it is left to expire, so a hold that was
        # never settled (a bug) is swept instead of renewed for as long as the process lives
        self.max_lease_age = max_call_seconds + settle_retry_seconds + 60.0
        self._lease_ms = int(lease_seconds * 1000)
        self.journal = journal
        self.settle_retry_seconds = settle_retry_seconds
        self._leases: dict[str, Lease] = {}
        self._journaled: set[str] = set()
        self._background: set[asyncio.Task] = set()
        self.on_revoked: Callable[[str | None], None] | None = None   # called with a key id found revoked while holding

    @property
    def tick_seconds(self) -> float:
        """How often leases are renewed and the sweeper runs."""
        return self.lease_seconds / 6

    # ------------------------------------------------------------------ holds
    async def reserve(self, call_id: str, auth: KeyAuth, planner: Callable[[int, int | None], _P]) -> _P:
        quota = self.quota
        if quota is not None:
            quota.enter(auth.account_id, auth.key_id)     # until its settle, or a refusal below
            fast = quota.try_now(call_id, auth.account_id, auth.key_id, planner)   # the slice has room: no await
            if fast is not None:
                return cast(_P, fast)     # the planner's own plan
        now = int(time.time() * 1000)
        req = HoldRequest(call_id, auth.account_id, auth.key_id, now, now + self._lease_ms, planner)
        fut = asyncio.ensure_future(self._reserve(req))
        try:
            return cast(_P, await asyncio.shield(fut))     # the planner's own plan
        except asyncio.CancelledError:
            # the caller went away while the hold was being made: release it once it exists (or,
            # if none is made, end the call's count)
            fut.add_done_callback(lambda f: self._release_orphan(f, auth, call_id))
            raise
        except BaseException as exc:
            if quota is not None:
                quota.leave(auth.account_id, auth.key_id)
            if isinstance(exc, Refusal):
                raise InsufficientCredits(exc.message) from None
            if isinstance(exc, KeyRevoked):
                if self.on_revoked is not None:
                    self.on_revoked(auth.key_id)
                raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.") from None
            if isinstance(exc, StoreUnavailable):
                # no hold, no upstream call: nothing is charged. A hold whose commit did land (its
                # answer lost) has no lease here, so the sweeper releases it, charging nothing.
                log.warning("call %s refused: no hold could be made (%s)", call_id, exc)
                raise database_unavailable() from None
            raise

    async def _reserve(self, req: HoldRequest) -> Plan:
        if self.quota is not None and self.quota.may_slice(req.account_id, req.key_id):
            granted = await self.quota.authorize(req.call_id, req.account_id, req.key_id, req.planner)
            if granted is not None:
                return granted
        plan = await self.store.reserve(req)
        self._leases[req.call_id] = Lease()
        return plan

    def track(self, call_id: str, accrued: Callable[[], int], row: Callable[[], dict]) -> None:
        """Record this call's progress with its lease from now on."""
        if self.quota is not None and self.quota.track(call_id, accrued, row):
            return
        lease = self._leases.get(call_id)
        if lease is not None:
            lease.accrued, lease.row = accrued, row

    def _release_orphan(self, fut: asyncio.Future, auth: KeyAuth, call_id: str) -> None:
        if fut.cancelled() or fut.exception() is not None:
            if self.quota is not None:
                self.quota.leave(auth.account_id, auth.key_id)
            return
        usage = usage_row(call_id, auth.account_id, auth.key_id, int(time.time() * 1000), status=499,
                          end_state="client_disconnect")
        self.spawn(self.settle(Settlement(call_id, auth.account_id, auth.key_id, 0, usage)))

    # ------------------------------------------------------------------ settling
    async def settle(self, s: Settlement) -> SettleResult:
        """Settle, retrying with backoff for `settle_retry_seconds`; then journal it (the lease is
        kept until a replay lands, so the hold is not swept meanwhile)."""
        if self.quota is not None:
            self.quota.leave(s.account_id, s.key_id)
            charged = self.quota.charge(s)      # a call authorized against a slice: journaled, batched
            if isinstance(charged, SettleResult):
                return charged
            if charged is not None:
                return await charged            # the batch settle that carries it (group commit)
        deadline = time.monotonic() + self.settle_retry_seconds
        delay = 0.1
        while True:
            try:
                result = await self.store.settle(s)
            except Exception as exc:  # noqa: BLE001 - any database failure: retry, then the journal
                if time.monotonic() + delay >= deadline:
                    log.error("settling call %s failed (%s); writing it to the settle journal", s.call_id, exc)
                    break
                log.warning("settling call %s failed (%s); retrying in %.1f s", s.call_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._leases.pop(s.call_id, None)
            return result
        await self._journal(s)
        return SettleResult(max(s.charge, 0), None, None, pending=True)

    async def _journal(self, s: Settlement) -> None:
        if self.journal is None:
            log.error("call %s is unsettled and there is no settle journal: its hold is settled from its "
                      "recorded progress once this process stops", s.call_id)
            return
        try:
            await asyncio.to_thread(self.journal.write, s)
        except OSError:
            log.exception("cannot write call %s to the settle journal: its hold is settled from its recorded "
                          "progress once this process stops", s.call_id)
            return
        self._journaled.add(s.call_id)

    async def replay_journal(self) -> int:
        """Settle what the journal holds (written by this or any process); how many landed. With
        quota slices, the grant journals of stopped processes first."""
        landed = 0
        if self.quota is not None:
            landed += await self.quota.replay()
        if self.journal is None:
            return landed
        for s in await asyncio.to_thread(self.journal.pending):
            try:
                await self.store.settle(s)
            except Exception as exc:  # noqa: BLE001 - still unreachable: the next round retries
                log.warning("replaying the settle journal: call %s still fails (%s)", s.call_id, exc)
                break
            await asyncio.to_thread(self.journal.remove, s.call_id)
            self._leases.pop(s.call_id, None)
            self._journaled.discard(s.call_id)
            landed += 1
        for call_id in list(self._journaled):   # replayed by another process
            if not self.journal.has(call_id):
                self._journaled.discard(call_id)
                self._leases.pop(call_id, None)
        if landed:
            log.warning("settle journal: %d settlement(s) replayed", landed)
        return landed

    # ------------------------------------------------------------------ leases and the sweeper
    async def renew(self) -> None:
        """Extend every lease this process holds; record the progress of those that changed."""
        plain, changed = [], []
        if self.quota is not None:
            plain.extend(self.quota.slice_ids())
            self.quota.record_progress()
        if not self._leases and not plain:
            return
        too_old = time.monotonic() - self.max_lease_age
        for call_id, lease in list(self._leases.items()):
            if lease.born < too_old and call_id not in self._journaled:
                log.error("call %s was never settled; its hold is left to the sweeper", call_id)
                del self._leases[call_id]
                continue
            text = None
            if lease.accrued is not None and lease.row is not None:
                try:
                    accrued = lease.accrued()
                    if accrued != lease.reported:
                        text = orjson.dumps(lease.row()).decode()
                except Exception:  # a bad progress report must not stop the renewals
                    log.exception("progress of call %s", call_id)
            if text is None:
                plain.append(call_id)
            else:
                changed.append((call_id, accrued, text, lease))
        await self.store.renew(int(time.time() * 1000) + self._lease_ms, plain,
                               [(c, a, text) for c, a, text, _ in changed])
        for _, accrued, _, lease in changed:
            lease.reported = accrued

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.renew()
            except StoreUnavailable as exc:   # keep renewing; a lease outlives a few failed rounds
                log.warning("renewing hold leases failed: %s", exc)
            except Exception:
                log.exception("renewing hold leases failed")

    async def sweep(self) -> int:
        await self.replay_journal()
        swept = await self.store.sweep(int(time.time() * 1000))
        if swept:
            log.warning("settled %d hold(s) whose process stopped renewing them, from their recorded progress",
                        swept)
        return swept

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:   # keep sweeping; the next round retries
                log.warning("hold sweep failed: %s", exc)
            except Exception:
                log.exception("hold sweep failed")
            await asyncio.sleep(self.tick_seconds)

    # ------------------------------------------------------------------ background work
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
        if self.quota is not None:
            try:
                await self.quota.close()
            except Exception:   # what is left is in the grant journal, replayed at the next start
                log.exception("settling quota slices at shutdown failed")
