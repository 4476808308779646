"""Money: integer micro-rupees everywhere; the one place a Decimal becomes an int.

1 INR = 1_000_000 micro-INR. Prices are exact rationals (catalog numbers are read as
decimal strings), a call's cost is summed exactly and rounded up once.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

MICROS_PER_INR = 1_000_000

Micros = int


def to_fraction(value: object) -> Fraction:
    """A catalog or settings number as an exact fraction (floats go through their repr)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise TypeError("a price is not a boolean")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, (float, str, Decimal)):
        try:
            return Fraction(Decimal(repr(value) if isinstance(value, float) else value))
        except (InvalidOperation, ValueError, OverflowError) as exc:
            raise ValueError(f"not a finite decimal number: {value!r}") from exc
    raise TypeError(f"not a number: {value!r}")


def ceil_fraction(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def inr_to_micros(value: object) -> Micros:
    """An INR amount given by a person (CLI, admin) as exact micros; at most 6 decimals."""
    frac = to_fraction(str(value) if isinstance(value, float) else value)
    micros = frac * MICROS_PER_INR
    if micros.denominator != 1:
        raise ValueError("amounts take at most 6 decimal places")
    return int(micros)


def micros_to_inr(micros: Micros) -> float:
    """For JSON output only: INR as a number rounded to 6 decimals (every micro distinct below
    about 8.6 billion INR, 2**33 x 10**6 micros)."""
    return float(Decimal(micros).scaleb(-6))


def format_inr(micros: Micros) -> str:
    """Decimal string with 6 places, for headers and the CLI ('1.500000')."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_INR)
    return f"{sign}{whole}.{frac:06d}"
