"""SQL of the billing hot path, and the settle and sweep procedures, shared by the SQLite and
PostgreSQL stores.

A procedure is a generator: it yields steps `(kind, sql, args)` and receives each step's result,
so the one procedure runs on SQLite's synchronous writer connection and on an asyncpg
connection alike (each store drives it, inside its own transaction). SQL uses '?' placeholders
(the PostgreSQL store numbers them); a LOCK step is a read that PostgreSQL makes `FOR UPDATE`
(SQLite's BEGIN IMMEDIATE has locked the whole database already).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import orjson

from aicredits.domain.ledger import SWEPT, settle_without_hold
from aicredits.domain.usage import usage_row
from aicredits.ports import KeyAuth, KeyRevoked, Settlement, SettleResult, SliceView

log = logging.getLogger("aicredits.store")

USAGE_COLUMNS = (
    "call_id", "request_id", "account_id", "key_id", "model", "provider", "deployment", "endpoint", "stream",
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "units", "cost", "hold", "latency_ms", "overhead_ms", "status", "cache", "end_state",
    "error", "created_at",
)

# a disabled account's keys are found as no key at all
FIND_KEY = ("SELECT k.id, k.account_id, k.name, k.limit_micros, k.revoked_at, k.rpm, k.tpm, k.expires_at, "
            "k.models FROM api_keys k "
            "JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ? AND a.disabled_at IS NULL")
WALLET = "SELECT balance, held FROM wallets WHERE account_id = ?"
KEY_STATE = "SELECT limit_micros, spent, held, revoked_at FROM api_keys WHERE id = ?"
HOLD_WALLET = "UPDATE wallets SET held = held + ? WHERE account_id = ?"
HOLD_KEY = "UPDATE api_keys SET held = held + ? WHERE id = ?"
INSERT_HOLD = ("INSERT INTO holds (call_id, account_id, key_id, amount, created_at, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?)")
DELETE_HOLD = "DELETE FROM holds WHERE call_id = ? RETURNING amount"
CHARGE_WALLET = ("UPDATE wallets SET held = held - ?, balance = balance - ?, total_spent = total_spent + ?, "
                 "updated_at = ? WHERE account_id = ? RETURNING balance, held")
# last_used_at rides on the settle's own key update: no extra write on the hot path
CHARGE_KEY = "UPDATE api_keys SET held = held - ?, spent = spent + ?, last_used_at = ? WHERE id = ?"
INSERT_ENTRY = ("INSERT INTO ledger_entries (account_id, kind, amount, balance_after, call_id, key_id, note, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_USAGE = (f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in USAGE_COLUMNS)})")
UPDATE_USAGE = (f"UPDATE usage_records SET {', '.join(c + ' = ?' for c in USAGE_COLUMNS if c != 'call_id')} "
                "WHERE call_id = ?")
USAGE_OF = "SELECT cost, end_state, hold FROM usage_records WHERE call_id = ?"
EXPIRED_HOLDS = "SELECT call_id, account_id FROM holds WHERE expires_at < ? ORDER BY expires_at"
TAKE_EXPIRED = ("DELETE FROM holds WHERE call_id = ? AND expires_at < ? "
                "RETURNING amount, key_id, accrued, progress, created_at")
RENEW = "UPDATE holds SET expires_at = ? WHERE call_id = ?"
RECORD_PROGRESS = "UPDATE holds SET expires_at = ?, accrued = ?, progress = ? WHERE call_id = ?"
CREDITS = ("SELECT w.balance, w.held, w.total_added, w.total_spent FROM wallets w WHERE w.account_id = ?")
KEY_CREDITS = "SELECT name, limit_micros, spent, held FROM api_keys WHERE id = ?"

# quota slices (services/quota.py): a slice is a hold row whose call id starts with SLICE_PREFIX
SLICE_PREFIX = "slice_"
SLICE_OF = "SELECT amount FROM holds WHERE call_id = ?"
SLICE_ADD = "UPDATE holds SET amount = amount + ?, expires_at = ? WHERE call_id = ?"
SLICE_TAKE = "UPDATE holds SET amount = amount - ? WHERE call_id = ?"
DELETE_SLICE = "DELETE FROM holds WHERE call_id = ? RETURNING amount, key_id"
TAKE_EXPIRED_SLICE = "DELETE FROM holds WHERE call_id = ? AND expires_at < ? RETURNING amount, key_id"
SHRINK_SLICE = "UPDATE holds SET amount = amount - ? WHERE call_id = ? AND amount >= ? RETURNING amount"
RELEASE_WALLET = "UPDATE wallets SET held = held - ? WHERE account_id = ?"
RELEASE_KEY = "UPDATE api_keys SET held = held - ? WHERE id = ?"
KEY_HEADROOM = "SELECT limit_micros, spent, held FROM api_keys WHERE id = ?"
LANDED_CHUNK = 500

# step kinds
ONE, LOCK, ALL, EXEC, MANY = "one", "lock", "all", "exec", "many"
_R = TypeVar("_R")
# a procedure: yields (kind, sql, args), is sent each step's result, returns its own result
Steps = Generator[tuple[str, str, Any], Any, _R]

SWEPT_ERROR = ("The gateway process serving this call stopped before it settled; charged from the "
               "progress it last recorded.")


def numbered(sql: str) -> str:
    """'?' placeholders as PostgreSQL's $1, $2, ..."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def key_auth(row: Sequence[Any] | None) -> KeyAuth | None:
    """A FIND_KEY row as the hot path's KeyAuth (None: revoked)."""
    if row is None or row[4] is not None:
        return None
    models = tuple(p for p in row[8].split(",") if p) if row[8] else None   # validated when set
    return KeyAuth(row[0], row[1], row[2], row[3], row[5], row[6], row[7], models or None)


def usage_values(usage: dict) -> tuple:
    return tuple(usage.get(c) for c in USAGE_COLUMNS)


def key_headroom(limit_micros: int | None, spent: int, held: int) -> int | None:
    return None if limit_micros is None else limit_micros - spent - held


def credits_view(wallet_row: Sequence[Any], key_row: Sequence[Any] | None) -> dict[str, Any]:
    balance, held, added, spent = wallet_row
    out: dict[str, Any] = {"balance": balance, "held": held, "total_added": added, "total_spent": spent, "key": None}
    if key_row is not None:
        name, limit, kspent, kheld = key_row
        out["key"] = {"name": name, "limit": limit, "spent": kspent, "held": kheld}
    return out


# ---------------------------------------------------------------- procedures
def settle_steps(s: Settlement, now: int) -> Steps[SettleResult]:
    """Settle one call: with its hold, charge at most the hold and release it; without it,
    `settle_without_hold` decides (an already settled call changes nothing). Idempotent by call id."""
    w = yield LOCK, WALLET, (s.account_id,)
    row = yield ONE, DELETE_HOLD, (s.call_id,)
    if row is not None:
        return (yield from _charge_hold(s, row[0], now))
    return (yield from _without_hold(s, w, now))


def _charge_hold(s: Settlement, held: int, now: int) -> Steps[SettleResult]:
    charge = min(max(s.charge, 0), held)
    bal, still_held = yield ONE, CHARGE_WALLET, (held, charge, charge, now, s.account_id)
    if s.key_id is not None:
        yield EXEC, CHARGE_KEY, (held, charge, now, s.key_id)
    if charge:
        yield EXEC, INSERT_ENTRY, (s.account_id, "charge", -charge, bal, s.call_id, s.key_id, s.note, now)
    yield EXEC, INSERT_USAGE, usage_values(dict(s.usage, cost=charge, hold=held))
    return SettleResult(charge, bal, bal - still_held)


def _without_hold(s: Settlement, wallet: Sequence[int], now: int) -> Steps[SettleResult]:
    prior = yield ONE, USAGE_OF, (s.call_id,)
    headroom = None
    if s.key_id is not None:
        k = yield LOCK, KEY_STATE, (s.key_id,)
        if k is not None:
            headroom = key_headroom(k[0], k[1], k[2])
    available = wallet[0] - wallet[1]
    plan = settle_without_hold(s.charge, available=available, key_headroom=headroom,
                               prior_cost=prior[0] if prior else None, prior_end_state=prior[1] if prior else None,
                               end_state=s.usage.get("end_state", ""))
    if plan is None:    # settled already: the first result again
        return SettleResult(prior[0], wallet[0], available)
    log.warning("settling call %s without its hold (%s): %d micro-INR moved, %d charged in all",
                s.call_id, "after the sweeper" if prior else "none left", plan.move, plan.cost)
    bal, still_held = yield ONE, CHARGE_WALLET, (0, plan.move, plan.move, now, s.account_id)
    if s.key_id is not None:
        yield EXEC, CHARGE_KEY, (0, plan.move, now, s.key_id)
    if plan.move:
        kind = "correction" if prior else "charge"
        yield EXEC, INSERT_ENTRY, (s.account_id, kind, -plan.move, bal, s.call_id, s.key_id, s.note, now)
    usage = dict(s.usage, cost=plan.cost, hold=prior[2] if prior else 0)
    if prior is None:
        yield EXEC, INSERT_USAGE, usage_values(usage)
    else:
        values = usage_values(usage)
        yield EXEC, UPDATE_USAGE, (*values[1:], s.call_id)
    return SettleResult(plan.cost, bal, bal - still_held)


def sweep_one_steps(call_id: str, account_id: int, now: int) -> Steps:
    """Settle an expired hold (its process stopped renewing it) from the progress its process last
    recorded: `accrued` charged, a usage row with end state SWEPT. False if it was renewed or
    settled meanwhile. An expired quota slice is released whole (its calls' charges come from
    their process's grant journal, replayed before every sweep)."""
    if call_id.startswith(SLICE_PREFIX):
        return bool((yield from release_slice_steps(call_id, account_id, now)))
    yield LOCK, WALLET, (account_id,)
    row = yield ONE, TAKE_EXPIRED, (call_id, now)
    if row is None:
        return False
    amount, key_id, accrued, progress, created_at = row
    usage = swept_usage(call_id, account_id, key_id, progress, created_at, now)
    yield from _charge_hold(Settlement(call_id, account_id, key_id, accrued, usage, note=usage["model"]), amount, now)
    return True


def swept_usage(call_id: str, account_id: int, key_id: str | None, progress: str | None, created_at: int,
                now: int) -> dict:
    base = usage_row(call_id, account_id, key_id, now)
    if progress:
        try:
            recorded = orjson.loads(progress)
        except orjson.JSONDecodeError:
            recorded = None
        if isinstance(recorded, dict):
            base.update({k: v for k, v in recorded.items() if k in USAGE_COLUMNS})
    base.update(call_id=call_id, account_id=account_id, key_id=key_id, status=502, end_state=SWEPT,
                error=SWEPT_ERROR, latency_ms=max(0, now - created_at), created_at=now)
    return base


def renew_steps(expires_at: int, call_ids: list[str], progress: list[tuple[str, int, str]]) -> Steps:
    """Extend the leases of a live process's holds; record the progress of those that changed."""
    if call_ids:
        yield MANY, RENEW, [(expires_at, c) for c in call_ids]
    if progress:
        yield MANY, RECORD_PROGRESS, [(expires_at, accrued, text, c) for c, accrued, text in progress]


def record_steps(rows: list[dict]) -> Steps:
    """Usage rows of calls that moved no money (refused ones: 401, 402, 403, 429), in one
    statement. Nothing else is touched: no hold, no wallet, no ledger entry."""
    if rows:
        yield MANY, INSERT_USAGE, [usage_values(dict(r, cost=0, hold=0)) for r in rows]


# ---------------------------------------------------------------- quota slices (services/quota.py)
def _view(granted: int, amount: int, account_id: int, key_id: str | None) -> Steps:
    w = yield ONE, WALLET, (account_id,)
    headroom = None
    if key_id is not None:
        k = yield ONE, KEY_HEADROOM, (key_id,)
        if k is not None:
            headroom = key_headroom(k[0], k[1], k[2])
    return SliceView(granted, amount, w[0], w[1], headroom)


def grant_steps(slice_id: str, account_id: int, key_id: str | None, want: Callable[[int, int | None], int],
                now: int, expires_at: int) -> Steps:
    """Reserve `want(available, key headroom)` more for the slice (0: none), in the hold
    transaction's way: the wallet locked, then the key; only what fits in balance - held (and the
    key's limit - spent - held) is ever granted, so the sum of all holds and slices never exceeds
    the balance. KeyRevoked for a revoked key or an account without a wallet."""
    w = yield LOCK, WALLET, (account_id,)
    if w is None:
        raise KeyRevoked("the key's account has no wallet")
    headroom = None
    if key_id is not None:
        k = yield LOCK, KEY_STATE, (key_id,)
        if k is None or k[3] is not None:
            raise KeyRevoked("the key was revoked")
        headroom = key_headroom(k[0], k[1], k[2])
    available = w[0] - w[1]
    amount = want(available, headroom)
    amount = max(0, min(amount, available, headroom if headroom is not None else amount))
    cur = yield ONE, SLICE_OF, (slice_id,)
    if amount:
        yield EXEC, HOLD_WALLET, (amount, account_id)
        if key_id is not None:
            yield EXEC, HOLD_KEY, (amount, key_id)
        if cur is None:
            yield EXEC, INSERT_HOLD, (slice_id, account_id, key_id, amount, now, expires_at)
        else:
            yield EXEC, SLICE_ADD, (amount, expires_at, slice_id)
    total = (cur[0] if cur is not None else 0) + amount
    return SliceView(amount, total, w[0], w[1] + amount,
                     None if headroom is None else headroom - amount)


def charge_slice_steps(slice_id: str, account_id: int, key_id: str | None, items: list[Settlement],
                       now: int, close: bool = False) -> Steps:
    """Settle many calls authorized against one slice, in one transaction: each charge moves from
    the slice (its hold) to the wallet's balance, with a `charge` entry and a usage row per call.
    Idempotent by call id (a call with a usage row already is left alone), so a retry after a lost
    commit, or a replay of the grant journal, changes nothing twice. A charge the slice no longer
    covers (the slice was swept or released) is settled as "Settling without a hold" says.
    `close`: the slice's rest is given back in the same transaction (its process has no call
    running on it). The view's `after` has each call's balance after its charge."""
    w = yield LOCK, WALLET, (account_id,)
    if key_id is not None:
        yield LOCK, KEY_STATE, (key_id,)
    landed: set[str] = set()
    ids = list(dict.fromkeys(s.call_id for s in items))
    for i in range(0, len(ids), LANDED_CHUNK):
        chunk = ids[i:i + LANDED_CHUNK]
        rows = yield ALL, ("SELECT call_id FROM usage_records WHERE call_id IN ("
                           + ", ".join("?" for _ in chunk) + ")"), tuple(chunk)
        landed.update(r[0] for r in rows)
    cur = yield ONE, SLICE_OF, (slice_id,)
    room = cur[0] if cur is not None else 0
    covered, rest = [], []
    after: dict[str, int] = {}
    for s in items:
        if s.call_id in landed:
            continue
        landed.add(s.call_id)
        charge = max(s.charge, 0)
        if charge <= room:
            room -= charge
            covered.append((s, charge))
        else:
            rest.append(s)
    total = sum(c for _, c in covered)
    if covered:
        if total:
            yield EXEC, SLICE_TAKE, (total, slice_id)
            bal, _ = yield ONE, CHARGE_WALLET, (total, total, total, now, account_id)
        else:
            bal = w[0]
        if key_id is not None:
            yield EXEC, CHARGE_KEY, (total, total, now, key_id)
        running = bal + total
        entries, rows = [], []
        for s, charge in covered:
            if charge:
                running -= charge
                entries.append((account_id, "charge", -charge, running, s.call_id, key_id, s.note, now))
            after[s.call_id] = running
            rows.append(usage_values(dict(s.usage, cost=charge)))
        if entries:
            yield MANY, INSERT_ENTRY, entries
        yield MANY, INSERT_USAGE, rows
    for s in rest:
        wallet = yield ONE, WALLET, (account_id,)
        res = yield from _without_hold(s, wallet, now)
        if res.balance is not None:
            after[s.call_id] = res.balance
    amount = room if cur is not None else 0
    if close and cur is not None:
        yield from release_slice_steps(slice_id, account_id)
        amount = 0
    view = yield from _view(0, amount, account_id, key_id)
    view.after.update(after)
    return view


def shrink_slice_steps(slice_id: str, account_id: int, key_id: str | None, amount: int) -> Steps:
    """Give `amount` of a slice back to the wallet (and the key), the rest staying held."""
    yield LOCK, WALLET, (account_id,)
    row = yield ONE, SHRINK_SLICE, (amount, slice_id, amount)
    if row is None:     # gone (swept), or holding less than that: nothing to give back
        cur = yield ONE, SLICE_OF, (slice_id,)
        left = cur[0] if cur is not None else 0
    else:
        left = row[0]
        yield EXEC, RELEASE_WALLET, (amount, account_id)
        if key_id is not None:
            yield EXEC, RELEASE_KEY, (amount, key_id)
    return (yield from _view(0, left, account_id, key_id))


def release_slice_steps(slice_id: str, account_id: int, expired_before: int | None = None) -> Steps:
    """Give a slice's hold back to the wallet (and the key): all of it, no charge, no usage row.
    With `expired_before`, only if its lease ran out before then (the sweeper). The amount released."""
    yield LOCK, WALLET, (account_id,)
    if expired_before is None:
        row = yield ONE, DELETE_SLICE, (slice_id,)
    else:
        row = yield ONE, TAKE_EXPIRED_SLICE, (slice_id, expired_before)
    if row is None:
        return 0
    amount, key_id = row
    if amount:
        yield EXEC, RELEASE_WALLET, (amount, account_id)
        if key_id is not None:
            yield EXEC, RELEASE_KEY, (amount, key_id)
    return amount
