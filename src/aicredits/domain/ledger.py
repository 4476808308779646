"""Ledger rules: the entry kinds with their signs and totals, and the checks
`aicredits ledger verify` runs (docs/billing.md, "Checking the ledger").

Every wallet change is a ledger entry with a signed `amount` and the `balance_after` it left.
A kind's rule says which sign its amount must have and which wallet total it counts in; a new
kind is one line in KIND_RULES (and `credit()`/the verify checks follow it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Sign = Literal[1, -1, 0]


@dataclass(frozen=True)
class KindRule:
    sign: Sign                                     # 1: amount > 0; -1: amount < 0; 0: either, never 0
    total: Literal["added", "spent"] | None = None  # the wallet total it counts in (spent: -amount)


KIND_RULES: Mapping[str, KindRule] = {
    "grant": KindRule(1, "added"),        # an operator's gift of credits
    "topup": KindRule(1, "added"),        # a paid top-up
    "refund": KindRule(-1, "added"),      # a paid top-up refunded: its credits taken back (net in total_added)
    "charge": KindRule(-1, "spent"),      # a call's cost
    "debit": KindRule(-1),                # an operator's removal of credits
    "adjustment": KindRule(0),            # an operator's correction, either way
    "correction": KindRule(0, "spent"),   # a call's own settle after the sweeper charged it (settle_without_hold)
}
KINDS = tuple(KIND_RULES)


def kinds_with_sign(sign: Sign) -> tuple[str, ...]:
    return tuple(k for k, r in KIND_RULES.items() if r.sign == sign)


def kinds_in_total(total: str) -> tuple[str, ...]:
    return tuple(k for k, r in KIND_RULES.items() if r.total == total)


def adds_to_total_added(kind: str) -> bool:
    rule = KIND_RULES.get(kind)
    return rule is not None and rule.total == "added"


def _sign_text(sign: Sign) -> str:
    return {1: "positive", -1: "negative", 0: "non-zero"}[sign]


# ---------------------------------------------------------------------------------------- findings
@dataclass(frozen=True)
class Finding:
    """One check that failed: the first bad row (in id order) and how many rows fail it."""
    check: str
    first: str
    count: int = 1

    def __str__(self) -> str:
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        return f"{self.check}: {self.first}{more}"


def _collect(check: str, bad: Iterable[str]) -> list[Finding]:
    bad = list(bad)
    return [Finding(check, bad[0], len(bad))] if bad else []


def chain_finding(first: Mapping | None, count: int) -> list[Finding]:
    """`first` is the lowest-id entry whose balance_after is not the previous entry's
    balance_after (0 before an account's first entry) plus its amount."""
    if first is None:
        return []
    expected = first["previous"] + first["amount"]
    return [Finding("ledger chain",
                    f"entry {first['id']} (account {first['account_id']}, {first['kind']}): balance_after "
                    f"{first['balance_after']} != previous balance_after {first['previous']} + amount "
                    f"{first['amount']} = {expected}", count)]


def sign_finding(first: Mapping | None, count: int) -> list[Finding]:
    """`first` is the lowest-id entry of an unknown kind or with the wrong sign for its kind."""
    if first is None:
        return []
    rule = KIND_RULES.get(first["kind"])
    if rule is None:
        why = f"has unknown kind {first['kind']!r} (known: {', '.join(KINDS)})"
    else:
        why = f"is a {first['kind']} of {first['amount']:+d}; a {first['kind']} must be {_sign_text(rule.sign)}"
    return [Finding("ledger sign", f"entry {first['id']} (account {first['account_id']}) {why}", count)]


@dataclass(frozen=True)
class WalletFacts:
    """A wallet's row beside what its ledger entries and holds add up to."""
    account_id: int
    balance: int
    held: int
    total_added: int
    total_spent: int
    entries_sum: int            # sum of every entry's amount
    last_balance_after: int | None
    added_sum: int              # sum of the amounts of kinds counting in total_added
    spent_sum: int              # minus the sum of the amounts of kinds counting in total_spent
    holds_sum: int


def wallet_findings(wallets: Iterable[WalletFacts]) -> list[Finding]:
    balance, last, totals, held, negative = [], [], [], [], []
    added_kinds, spent_kinds = "/".join(kinds_in_total("added")), "/".join(kinds_in_total("spent"))
    for f in sorted(wallets, key=lambda w: w.account_id):
        a = f"account {f.account_id}"
        if f.balance != f.entries_sum:
            balance.append(f"{a}: balance {f.balance} != sum of its ledger entries {f.entries_sum}")
        if f.last_balance_after is not None and f.last_balance_after != f.balance:
            last.append(f"{a}: last entry's balance_after {f.last_balance_after} != balance {f.balance}")
        bad_totals = []
        if f.total_added != f.added_sum:
            bad_totals.append(f"total_added {f.total_added} != sum of its {added_kinds} entries {f.added_sum}")
        if f.total_spent != f.spent_sum:
            bad_totals.append(f"total_spent {f.total_spent} != sum of its {spent_kinds} entries {f.spent_sum}")
        if bad_totals:
            totals.append(f"{a}: " + "; ".join(bad_totals))
        if f.held != f.holds_sum:
            held.append(f"{a}: held {f.held} != sum of its open holds {f.holds_sum}")
        if f.balance < 0:
            negative.append(f"{a}: balance is negative ({f.balance})")
    return (_collect("wallet balance", balance) + _collect("wallet last entry", last)
            + _collect("wallet totals", totals) + _collect("wallet held", held)
            + _collect("wallet negative", negative))


@dataclass(frozen=True)
class KeyFacts:
    key_id: str
    account_id: int
    limit_micros: int | None
    spent: int
    held: int
    charges_sum: int            # minus the sum of the key's charge entries
    holds_sum: int


def key_findings(keys: Iterable[KeyFacts]) -> list[Finding]:
    spent, limit, held = [], [], []
    for k in sorted(keys, key=lambda k: k.key_id):
        a = f"key {k.key_id} (account {k.account_id})"
        if k.spent != k.charges_sum:
            spent.append(f"{a}: spent {k.spent} != sum of its charges {k.charges_sum}")
        if k.limit_micros is not None and k.spent > k.limit_micros:
            limit.append(f"{a}: spent {k.spent} is above its limit {k.limit_micros}")
        if k.held != k.holds_sum:
            held.append(f"{a}: held {k.held} != sum of its open holds {k.holds_sum}")
    return _collect("key spent", spent) + _collect("key limit", limit) + _collect("key held", held)


def hold_findings(settled: Iterable[Mapping], expired: Iterable[Mapping]) -> list[Finding]:
    """Holds of calls that already have a usage record (settled, yet still holding money), and
    holds past their expiry (orphaned: no running call owns them)."""
    return (_collect("hold settled", (
                f"hold {h['call_id']} (account {h['account_id']}, {h['amount']} micro-INR) is still open "
                "but its call already has a usage record" for h in settled))
            + _collect("hold orphaned", (
                f"hold {h['call_id']} (account {h['account_id']}, {h['amount']} micro-INR) is past its lease: "
                "its process stopped renewing it and no sweeper has settled it yet" for h in expired)))


# ---------------------------------------------------------------- settling without a hold
SWEPT = "gateway_lost"   # the end state the sweeper records for a call whose process died


@dataclass(frozen=True)
class LateSettle:
    move: int    # micro-INR taken from the wallet now (negative: given back)
    cost: int    # the call's whole charge once this is done


def settle_without_hold(charge: int, *, available: int, key_headroom: int | None,
                        prior_cost: int | None, prior_end_state: str | None, end_state: str) -> LateSettle | None:
    """The one rule for a settle whose hold is gone (both stores apply it, store/billing_sql.py).

    - The call is settled already (its usage row exists and is not the sweeper's): None, nothing
      happens; the settle is idempotent by call id.
    - The sweeper settled it from its last recorded progress (`SWEPT`: its process was thought
      dead) and now the call's own settle arrives (a retried or journaled one): the difference is
      moved (a `correction` entry), so the call ends charged by its own end state. A refund is
      always given; an extra charge is capped so that the wallet stays >= 0 and the key within
      its limit.
    - No usage row (a hold released without one): the charge (a `charge` entry), capped the same way.
    """
    if prior_end_state is not None and (prior_end_state != SWEPT or end_state == SWEPT):
        return None
    base = prior_cost or 0
    move = max(0, charge) - base
    if move > 0:
        room = available if key_headroom is None else min(available, key_headroom)
        move = max(0, min(move, room))
    return LateSettle(move, base + move)
