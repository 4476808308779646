"""Ledger rules: entry kinds and the checks `aicredits ledger verify` runs."""

from __future__ import annotations

from dataclasses import dataclass

CREDIT_KINDS = ("topup", "grant", "refund")
DEBIT_KINDS = ("charge", "debit")    # debit: an operator takes credits back (never below zero)
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
