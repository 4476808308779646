"""Quota slices: calls authorized in memory against a slice of the wallet reserved in advance.

The way online-charging systems grant quota (RFC 4006's credit control): a gateway process
reserves a slice of a wallet's (and its key's) headroom in one database transaction, a hold row
like any call's (`holds`, call id `slice_...`, with a lease this process renews). Calls are then
authorized against the slice in this process's memory: a call's worst case (its hold, computed as
for a per-call hold) is taken from the slice's free part, with no database round trip before the
answer. The slice is the call's hold, and it exists in the database before the call is authorized.

When a call ends, its charge (at most its hold) is appended to the grant journal
(infra/journal.py, `GrantJournal`) and settled in the database with the other charges of the
slice by a batch settle: one transaction moves the charges from the slice's hold to the wallet's
balance, with one `charge` entry and one usage row per call (`store/billing_sql.py`,
`charge_slice_steps`; idempotent by call id). A slice is topped up when its free part runs low
(one more transaction). Two modes (`settle_before_answer`): by default the answer waits for its
batch, which starts as soon as a call ends (group commit), a slice is granted only to a key with
`min_running` calls running at once here, and the batch of its last running call gives it back;
deferred, the answer goes right after the journal line, batches run every `flush_seconds`, and a
slice is given back when idle.

Guarantees (docs/billing.md, "Quota slices"): a slice is granted only from balance - held (and
the key's limit - spent - held), so the sum of all holds and slices of every process never
exceeds the balance; a call is authorized only within its slice's free part, so its charge never
exceeds what is reserved. A wallet whose available money is under `min_calls` x a call's hold
gets per-call holds instead (as does any call the slice cannot fit after a top-up). A process
that dies leaves its slices to expire like any hold (the sweeper releases them whole) and its
journal to be replayed (by any process on the same state directory, before every sweep, and at
start): each call's own charge, or for a call that was still running its last recorded progress,
as the sweeper charges a per-call hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aicredits.domain.reservation import Refusal
from aicredits.ports import BillingStore, GrantLog, Plan, Settlement, SettleResult, SliceView
from aicredits.services.quota_replay import replay_grant_journals
from aicredits.store.billing_sql import SLICE_PREFIX

log = logging.getLogger("aicredits.billing")
Planner = Callable[[int, int | None], Plan]


class _Fallback:
    """_fit's answer for a call that takes a per-call hold."""


_FALLBACK = _Fallback()


class Slice:
    """One (account, key) slice of this process, as far as this process knows it."""
    __slots__ = ("account_id", "amount", "balance", "base", "calls", "closed", "granting", "id", "key_base",
                 "key_id", "known", "last_used", "lock", "outstanding", "pending", "unflushed", "unit")

    def __init__(self, account_id: int, key_id: str | None) -> None:
        self.id = SLICE_PREFIX + uuid.uuid4().hex
        self.account_id, self.key_id = account_id, key_id
        self.amount = 0          # the slice's hold in the database (after the last transaction on it)
        self.outstanding = 0     # holds of the calls authorized against it and still running
        self.unflushed = 0       # charges journaled, not yet in the database
        self.balance = 0         # the wallet's balance, as of the last transaction on this slice
        self.base = 0            # the wallet's available money with this slice counted free, ditto
        self.key_base: int | None = None   # the key's headroom with this slice counted free (None: no limit)
        self.known = False       # a transaction has read the wallet
        self.calls = 0
        self.unit = 0            # the last call's hold (sizes background top-ups)
        # (journal segment, charge, the answer waiting for it or None, the call's hold while it still
        # counts in `outstanding` (settle before answer: until its batch lands) or 0) to settle
        self.pending: list[tuple[int, Settlement, asyncio.Future | None, int]] = []
        self.closed = False      # given back (or being given back) with its last charges: no call takes it
        self.lock = asyncio.Lock()                        # one database operation on it at a time
        self.granting: asyncio.Future | None = None
        self.last_used = time.monotonic()

    def apply(self, view: SliceView) -> None:
        """What a transaction on this slice read and left."""
        self.amount = view.amount
        self.balance = view.balance
        self.base = view.balance - view.held + view.amount
        self.key_base = None if view.key_headroom is None else view.key_headroom + view.amount
        self.known = True

    @property
    def free(self) -> int:
        return self.amount - self.outstanding - self.unflushed


class SliceCall:
    __slots__ = ("accrued", "hold", "last", "reported", "row", "slice")

    def __init__(self, sl: Slice, hold: int) -> None:
        self.slice, self.hold = sl, hold
        self.accrued: Callable[[], int] | None = None
        self.row: Callable[[], dict] | None = None
        self.reported = -1
        self.last: dict | None = None    # the progress record last journaled


class Quota:
    def __init__(self, store: BillingStore, journal: GrantLog, *, slice_calls: int = 64, min_calls: int = 16,
                 flush_seconds: float = 0.05, idle_seconds: float = 5.0, lease_ms: int = 30_000,
                 settle_before_answer: bool = False, min_running: int = 2) -> None:
        """`settle_before_answer` (the gateway's default, AICREDITS_QUOTA_DEFERRED=off): a call's
        answer waits for the batch settle that carries its charge (started at once: group commit),
        a slice is granted only to an (account, key) with `min_running` calls (this one included)
        running in this process,
        and it is given back in the batch that settles its last running call. Without it (the
        deferred mode): answers right after the journal line, batches every `flush_seconds`,
        slices kept until idle for `idle_seconds`."""
        self.store = store
        self.journal = journal
        self.slice_calls = slice_calls
        self.min_calls = min_calls
        self.flush_seconds = flush_seconds
        self.idle_seconds = idle_seconds
        self.lease_ms = lease_ms
        self.settle_before_answer = settle_before_answer
        self.min_running = min_running
        self._slices: dict[tuple[int, str | None], Slice] = {}
        self._closing: list[Slice] = []       # closed slices whose last batch has not landed yet
        self._calls: dict[str, SliceCall] = {}
        self._running: dict[tuple[int, str | None], int] = {}   # calls of each (account, key) in this process
        self._flusher: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._wake = asyncio.Event()      # set when a slice is created: run_forever has work again

    # ------------------------------------------------------------------ calls running
    def enter(self, account_id: int, key_id: str | None) -> None:
        """A call of (account, key) starts in this process (before its hold or slice)."""
        key = (account_id, key_id)
        self._running[key] = self._running.get(key, 0) + 1

    def leave(self, account_id: int, key_id: str | None) -> None:
        """It ended (settled, or refused before any hold)."""
        key = (account_id, key_id)
        n = self._running.get(key, 0) - 1
        if n > 0:
            self._running[key] = n
        else:
            self._running.pop(key, None)

    # ------------------------------------------------------------------ authorizing
    def try_now(self, call_id: str, account_id: int, key_id: str | None, planner: Planner) -> Plan | None:
        """The call's plan when its slice has room for it now (no await), else None."""
        sl = self._slices.get((account_id, key_id))
        if sl is None or not sl.known:
            return None
        plan = self._fit(sl, planner)
        if plan is None or isinstance(plan, _Fallback):
            return None
        return self._take(sl, call_id, plan)

    def may_slice(self, account_id: int, key_id: str | None) -> bool:
        """Whether `authorize` can give this call a slice (else it takes a per-call hold)."""
        key = (account_id, key_id)
        return (not self.settle_before_answer or key in self._slices
                or self._running.get(key, 0) >= self.min_running)

    async def authorize(self, call_id: str, account_id: int, key_id: str | None, planner: Planner) -> Plan | None:
        """The call's plan, authorized against its slice (granted or topped up first if needed);
        None: the call takes a per-call hold (a small wallet, or the slice cannot fit it)."""
        key = (account_id, key_id)
        if not self.may_slice(account_id, key_id):
            return None     # few calls at once: per-call holds cost about as many transactions
        for _ in range(3):
            sl = self._slices.get(key)
            if sl is None:
                sl = self._slices[key] = Slice(account_id, key_id)
                self._wake.set()
            if sl.known:
                plan = self._fit(sl, planner)
                if isinstance(plan, _Fallback):
                    await self._give_back(sl)   # so the per-call hold can use what the slice kept
                    return None
                if plan is not None:
                    return self._take(sl, call_id, plan)
                unit = self._probe(sl, planner)
            else:
                unit = self._probe(sl, planner)
            if unit is None:
                return None
            if not await self._top_up(sl, unit):
                return None
        return None

    def _fit(self, sl: Slice, planner: Planner) -> Plan | _Fallback | None:
        used = sl.outstanding + sl.unflushed
        avail = sl.base - used
        key = None if sl.key_base is None else sl.key_base - used
        try:
            plan = planner(avail, key)
        except Refusal:
            return _FALLBACK    # the per-call hold gives the exact answer (402 with what fits)
        if plan.amount <= sl.amount - used:
            return plan
        need = plan.amount * self.min_calls
        if avail < need or (key is not None and key < need):
            return _FALLBACK    # a small wallet (or key): per-call holds
        return None             # the slice needs a top-up

    @staticmethod
    def _probe(sl: Slice, planner: Planner) -> int | None:
        """A call's hold, were money no limit: how big a slice it asks for."""
        try:
            return planner(1 << 62, None).amount
        except Refusal:
            return None

    def _take(self, sl: Slice, call_id: str, plan: Plan) -> Plan:
        amount = plan.amount
        sl.outstanding += amount
        sl.calls += 1
        sl.unit = amount
        sl.last_used = time.monotonic()
        self._calls[call_id] = SliceCall(sl, amount)
        if sl.free < amount * (self.slice_calls // 4) and sl.granting is None:
            self._spawn(self._top_up(sl, amount))     # top up before it runs out
        return plan

    async def _top_up(self, sl: Slice, unit: int) -> bool:
        """Grant the slice more (one transaction); wait for one already under way. False when
        nothing could be granted (a small wallet: per-call holds)."""
        if sl.closed:
            return True         # the caller looks for its (account, key)'s slice again
        if sl.granting is not None:
            await asyncio.shield(sl.granting)
            return True
        fut = sl.granting = asyncio.get_running_loop().create_future()
        slice_calls, min_calls = self.slice_calls, self.min_calls

        def want(available: int, key_headroom: int | None) -> int:
            room = available if key_headroom is None else min(available, key_headroom)
            if room < unit * min_calls:
                return 0
            return min(unit * slice_calls, room // 4)
        try:
            async with sl.lock:
                if sl.closed:
                    return True
                now = int(time.time() * 1000)
                view = await self.store.grant(sl.id, sl.account_id, sl.key_id, want, now, now + self.lease_ms)
                # charges flushed meanwhile are in the view; those still pending stay counted
                sl.apply(view)
            return view.granted > 0
        finally:
            sl.granting = None
            fut.set_result(None)

    async def _give_back(self, sl: Slice) -> None:
        """Return the slice's free part to the wallet (one transaction), so a small wallet's or
        key's per-call holds are not refused while money sits in this process's slice."""
        async with sl.lock:
            give = sl.free
            if give <= 0 or sl.closed:
                return
            sl.amount -= give          # no call takes it from now on
            try:
                view = await self.store.shrink_slice(sl.id, sl.account_id, sl.key_id, give)
            except BaseException:
                # it may have landed (a lost answer): the slice is re-read by its next grant before
                # any call is authorized against it again
                sl.known = False
                raise
            sl.apply(view)

    def has(self, call_id: str) -> bool:
        return call_id in self._calls

    def track(self, call_id: str, accrued: Callable[[], int], row: Callable[[], dict]) -> bool:
        c = self._calls.get(call_id)
        if c is None:
            return False
        c.accrued, c.row = accrued, row
        return True

    # ------------------------------------------------------------------ charging
    def charge(self, s: Settlement) -> SettleResult | asyncio.Future[SettleResult] | None:
        """Charge a call authorized against a slice (at most its hold): journaled before this
        returns, settled in the database by the next batch. None: not a slice's call. With
        `settle_before_answer`, a future the batch that settles it resolves (started at once if
        none is under way)."""
        c = self._calls.pop(s.call_id, None)
        if c is None:
            return None
        sl = c.slice
        charge = min(max(s.charge, 0), c.hold)
        usage = dict(s.usage, cost=charge, hold=c.hold)
        st = Settlement(s.call_id, s.account_id, s.key_id, charge, usage, s.note)
        try:
            seq = self.journal.append({"t": "c", "slice": sl.id, "call_id": s.call_id, "account_id": s.account_id,
                                       "key_id": s.key_id, "charge": charge, "usage": usage, "note": s.note})
        except OSError:
            log.exception("cannot write call %s to the grant journal; it is settled by the next batch", s.call_id)
            seq = self.journal.seq
        sl.calls -= 1
        if self.settle_before_answer:
            # its hold stays reserved until its charge lands, as a per-call hold does
            fut: asyncio.Future[SettleResult] = asyncio.get_running_loop().create_future()
            sl.pending.append((seq, st, fut, c.hold))
            if self._flusher is None:
                self._flusher = asyncio.ensure_future(self._flush_now())
            return fut
        sl.outstanding -= c.hold
        sl.unflushed += charge
        sl.pending.append((seq, st, None, 0))
        # balance after this charge; available: minus every open hold, this slice's only as far as
        # its running calls hold it (docs/billing.md, "Quota slices")
        return SettleResult(charge, sl.balance - sl.unflushed, sl.base - sl.outstanding - sl.unflushed)

    # ------------------------------------------------------------------ leases and progress
    def slice_ids(self) -> list[str]:
        return [sl.id for sl in self._slices.values()] + [sl.id for sl in self._closing]

    def record_progress(self) -> None:
        """Journal the progress of running calls that changed (what the sweeper would charge)."""
        for call_id, c in list(self._calls.items()):
            if c.accrued is None or c.row is None:
                continue
            try:
                accrued = c.accrued()
                if accrued == c.reported:
                    continue
                sl = c.slice
                rec = {"t": "p", "slice": sl.id, "call_id": call_id, "account_id": sl.account_id,
                       "key_id": sl.key_id, "accrued": min(max(accrued, 0), c.hold), "hold": c.hold, "row": c.row()}
                self.journal.append(rec)
            except Exception:  # a bad progress report must not stop the others
                log.exception("progress of call %s", call_id)
                continue
            c.reported, c.last = accrued, rec

    # ------------------------------------------------------------------ the batch settle
    async def _flush_now(self) -> None:
        """Group commit: settle what is pending now, and again what came meanwhile, while some
        answer waits for it."""
        try:
            while any(fut is not None and not fut.done() for sl in self._all() for _, _, fut, _ in sl.pending):
                await self.flush()
        except Exception:
            log.exception("settling quota slices failed")
        finally:
            self._flusher = None

    def _all(self) -> list[Slice]:
        return [*self._slices.values(), *self._closing]

    async def flush(self) -> None:
        work = [sl for sl in self._all() if sl.pending or sl.closed]
        if work:
            if not self.settle_before_answer:    # answers do not wait for the database: the journal first
                await asyncio.to_thread(self.journal.sync)
            await asyncio.gather(*(self._flush_one(sl) for sl in work))
        oldest = min((sl.pending[0][0] for sl in self._all() if sl.pending), default=None)
        self.journal.retire(oldest)
        self.journal.rotate_if_full([c.last for c in self._calls.values() if c.last is not None])

    async def _flush_one(self, sl: Slice) -> None:
        async with sl.lock:
            batch, sl.pending = sl.pending, []
            if not batch and (not sl.closed or sl not in self._closing):
                return      # nothing to settle, or given back by the flush this one waited for
            close = sl.closed or (self.settle_before_answer and sl.calls == 0 and sl.known)
            if close and not sl.closed:
                # no call runs on it: its rest goes back with these charges, and from now on
                # the (account, key)'s calls take a per-call hold or a new slice
                sl.closed = True
                if self._slices.get((sl.account_id, sl.key_id)) is sl:
                    del self._slices[(sl.account_id, sl.key_id)]
                self._closing.append(sl)
            try:
                view = await self.store.charge_slice(sl.id, sl.account_id, sl.key_id,
                                                     [st for _, st, _, _ in batch], close=close)
            except Exception as exc:  # noqa: BLE001 - kept (and journaled): the next round retries
                # from now on they count as charged, not held, as in the deferred mode
                sl.outstanding -= sum(hold for _, _, _, hold in batch)
                sl.unflushed += sum(st.charge for _, st, _, hold in batch if hold)
                sl.pending[:0] = [(seq, st, None, 0) for seq, st, _, _ in batch]
                log.warning("settling %d call(s) of slice %s failed (%s); retrying", len(batch), sl.id, exc)
                waiting = [(st, fut) for _, st, fut, _ in batch if fut is not None and not fut.done()]
                if waiting:
                    # their answers go out now, like a per-call settle's that went to the journal:
                    # the charge is in the grant journal, made durable here, and settled by a retry
                    try:
                        await asyncio.to_thread(self.journal.sync)
                    except OSError:
                        log.exception("cannot sync the grant journal")
                    for st, fut in waiting:
                        fut.set_result(SettleResult(st.charge, None, None, pending=True))
                return
            if close and sl in self._closing:
                self._closing.remove(sl)
            sl.outstanding -= sum(hold for _, _, _, hold in batch)
            sl.unflushed -= sum(st.charge for _, st, _, hold in batch if not hold)
            sl.apply(view)
            # the balance each charge left; available: minus every other open hold, this slice's
            # only as far as its running calls hold it
            others = view.held - view.amount + sl.outstanding
            for _, st, answer, _ in batch:
                if answer is not None and not answer.done():
                    bal = view.after.get(st.call_id, view.balance)
                    answer.set_result(SettleResult(st.charge, bal, bal - others))

    async def _return_idle(self) -> None:
        now = time.monotonic()
        for key, sl in list(self._slices.items()):
            idle = min(self.idle_seconds, 2 * self.flush_seconds) if self.settle_before_answer else self.idle_seconds
            if (sl.calls == 0 and not sl.pending and sl.unflushed == 0 and sl.granting is None
                    and not sl.lock.locked() and now - sl.last_used > idle):
                del self._slices[key]
                sl.closed = True     # a top-up still to start on it grants nothing
                if sl.known:
                    self._spawn(self._release(sl))

    async def _release(self, sl: Slice) -> None:
        try:
            async with sl.lock:
                await self.store.release_slice(sl.id, sl.account_id)
        except Exception as exc:  # noqa: BLE001 - its lease runs out and the sweeper releases it
            log.warning("returning slice %s failed (%s); it is released when its lease runs out", sl.id, exc)

    async def run_forever(self) -> None:
        """Every `flush_seconds`: the batch settle, then the idle slices given back. While this
        process holds no slice (a flush found none, and none was created since), it sleeps until
        one is created instead of waking 20 times a second to find nothing."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                # nothing in memory: this flush only retires the journal's rotated segments,
                # and nothing can come back before a slice is created (authorize sets _wake)
                idle = not self._slices and not self._closing and not self._calls
                await self.flush()
                await self._return_idle()
            except Exception:
                log.exception("settling quota slices failed")
                continue
            if idle and not self._slices and not self._closing and not self._calls:
                self._wake.clear()
                await self._wake.wait()

    # ------------------------------------------------------------------ replay and shutdown
    async def replay(self) -> int:
        """Settle what the grant journals of dead processes hold (services/quota_replay.py)."""
        return await replay_grant_journals(self.journal, self.store)

    async def close(self) -> None:
        """Settle every pending charge and give every slice back (at shutdown, after the drain)."""
        for _ in range(3):
            await self.flush()
            if not any(sl.pending for sl in self._all()):
                break
            await asyncio.sleep(0.2)
        landed = not any(sl.pending for sl in self._all())
        for sl in list(self._slices.values()):
            if sl.known and sl.calls == 0 and not sl.pending:
                await self._release(sl)
        self._slices.clear()
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        self.journal.close(landed=landed)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("quota slice top-up failed: %s", task.exception())
