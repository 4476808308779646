"""Ledger rules: entry kinds and the checks `aicredits ledger verify` runs."""

from __future__ import annotations

from dataclasses import dataclass

CREDIT_KINDS = ("topup", "grant", "refund")
DEBIT_KINDS = ("charge",)
KINDS = CREDIT_KINDS + DEBIT_KINDS + ("adjustment",)


@dataclass(frozen=True)
class WalletFacts:
    account_id: int
    balance: int
    held: int
    entries_sum: int
    last_balance_after: int | None
    holds_sum: int


def wallet_problems(f: WalletFacts) -> list[str]:
    out = []
    if f.balance != f.entries_sum:
        out.append(f"account {f.account_id}: balance {f.balance} != sum of ledger entries {f.entries_sum}")
    if f.last_balance_after is not None and f.last_balance_after != f.balance:
        out.append(f"account {f.account_id}: last entry's balance_after {f.last_balance_after} != balance {f.balance}")
    if f.held != f.holds_sum:
        out.append(f"account {f.account_id}: held {f.held} != sum of open holds {f.holds_sum}")
    if f.balance < 0:
        out.append(f"account {f.account_id}: balance is negative ({f.balance})")
    return out


# ---------------------------------------------------------------- settling without a hold
SWEPT = "gateway_lost"   # the end state the sweeper records for a call whose process died


@dataclass(frozen=True)
class LateSettle:
    move: int    # micro-INR taken from the wallet now (negative: given back)
    cost: int    # the call's whole charge once this is done


def settle_without_hold(charge: int, *, available: int, key_headroom: int | None,
                        prior_cost: int | None, prior_end_state: str | None, end_state: str) -> LateSettle | None:
    """The one rule for a settle whose hold is gone (both stores apply it).

    - The call is settled already (its usage row exists and is not the sweeper's): None, nothing
      happens; the settle is idempotent by call id.
    - The sweeper settled it from its last recorded progress (`SWEPT`, its process was thought
      dead) and now the call's own settle arrives (a retried or journaled one): the difference
      is moved, so the call ends charged by its own end state. A refund is always given; an extra
      charge is capped so that the wallet stays >= 0 and the key within its limit.
    - No usage row (a hold released without one): the charge, capped the same way.
    """
    if prior_end_state is not None and (prior_end_state != SWEPT or end_state == SWEPT):
        return None
    base = prior_cost or 0
    move = max(0, charge) - base
    if move > 0:
        room = available if key_headroom is None else min(available, key_headroom)
        move = max(0, min(move, room))
    return LateSettle(move, base + move)


def key_problems(key_id: str, limit: int | None, spent: int) -> list[str]:
    if limit is not None and spent > limit:
        return [f"key {key_id}: spent {spent} is above its limit {limit}"]
    return []
