"""Top-up rules, no I/O: INR amounts in paise, what a top-up costs (fee and GST on top of the
credits), what a refund takes back from the wallet, and how much of it the wallet can give.

1 paisa = 10,000 micro-INR, so a payment in paise converts to the wallet's micro-INR exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

PAISE_PER_INR = 100
MICROS_PER_PAISA = 10_000
CURRENCY = "INR"
_AMOUNT_RE = re.compile(r"^\s*(\d{1,12})(?:\.(\d{1,2}))?\s*$")


class TopupRefused(ValueError):
    """An amount the operator's terms do not allow (a message for the person paying)."""


def paise_to_micros(paise: int) -> int:
    return paise * MICROS_PER_PAISA


def parse_inr(text: object) -> int:
    """An INR amount typed by a person ('500', '500.5', '1234.75') as paise; at most 2 decimals."""
    m = _AMOUNT_RE.match(str(text))
    if not m:
        raise TopupRefused(f"{str(text)[:40]!r} is not an amount in rupees (use digits, up to 2 decimals)")
    return int(m.group(1)) * PAISE_PER_INR + int((m.group(2) or "0").ljust(2, "0"))


def format_paise(paise: int) -> str:
    """'1234.50' (2 decimals, no grouping)."""
    sign = "-" if paise < 0 else ""
    whole, frac = divmod(abs(paise), PAISE_PER_INR)
    return f"{sign}{whole}.{frac:02d}"


def percent(value: object) -> Fraction:
    """A percentage from settings ('2', '18', '2.36') as an exact fraction of 1."""
    try:
        frac = Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a percentage: {value!r}") from exc
    if not 0 <= frac <= 100:
        raise ValueError(f"a percentage is between 0 and 100, got {value!r}")
    return frac / 100


def _round_half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


@dataclass(frozen=True)
class TopupTerms:
    """The operator's terms: the smallest and largest top-up (of credits), the preset buttons,
    and a fee and GST charged on top of the credits."""

    min_paise: int
    max_paise: int
    presets: tuple[int, ...]
    fee: Fraction = Fraction(0)     # of the credits
    gst: Fraction = Fraction(0)     # of credits + fee

    def __post_init__(self) -> None:
        if not 100 <= self.min_paise <= self.max_paise:
            raise ValueError("the minimum top-up must be at least 1 INR and at most the maximum")
        for p in self.presets:
            if not self.min_paise <= p <= self.max_paise:
                raise ValueError(f"preset {format_paise(p)} INR is outside {format_paise(self.min_paise)}"
                                 f"..{format_paise(self.max_paise)} INR")


@dataclass(frozen=True)
class Quote:
    """What a top-up of `credit_paise` costs: the amount paid is credits + fee + GST."""

    credit_paise: int
    fee_paise: int
    gst_paise: int

    @property
    def amount_paise(self) -> int:
        return self.credit_paise + self.fee_paise + self.gst_paise

    @property
    def credit_micros(self) -> int:
        return paise_to_micros(self.credit_paise)


def quote(credit_paise: int, terms: TopupTerms) -> Quote:
    """Fee and GST, each rounded to the paisa (half up) once; refused outside the min/max."""
    if credit_paise < terms.min_paise:
        raise TopupRefused(f"The smallest top-up is {format_paise(terms.min_paise)} INR.")
    if credit_paise > terms.max_paise:
        raise TopupRefused(f"The largest top-up is {format_paise(terms.max_paise)} INR.")
    fee = _round_half_up(credit_paise * terms.fee)
    gst = _round_half_up((credit_paise + fee) * terms.gst)
    return Quote(credit_paise, fee, gst)


def refund_claim(refund_paise: int, amount_paise: int, credit_micros: int, claimed_before: int) -> int:
    """What a refund of `refund_paise` (of a payment of `amount_paise` that credited
    `credit_micros`) takes back from the wallet: the same share of the credits, rounded up to the
    micro, never more than what earlier refunds of that payment left (`claimed_before`)."""
    if refund_paise <= 0 or amount_paise <= 0:
        return 0
    share = Fraction(min(refund_paise, amount_paise) * credit_micros, amount_paise)
    wanted = -((-share.numerator) // share.denominator)
    return max(0, min(wanted, credit_micros - claimed_before))


def split_debit(wanted: int, balance: int, held: int) -> tuple[int, int]:
    """(debited, shortfall): a refund takes at most what is free (balance minus in-flight holds),
    so the balance never goes below zero nor below what running calls hold."""
    free = max(0, balance - held)
    debited = min(wanted, free)
    return debited, wanted - debited
