"""How the dashboard shows money and time: rupees with Indian digit grouping (₹1,23,456.78),
dates in the user's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal

LOCALE = "en_IN"
PAISE = Decimal("0.01")


def inr(micros: int | None, exact: bool = False) -> str:
    """₹1,23,456.78 (to the paisa, half-even); `exact` keeps up to the 6 micro digits.
    An amount under a paisa that is not zero shows as <₹0.01 rather than a misleading ₹0.00."""
    if micros is None:
        return "—"
    value = Decimal(micros).scaleb(-6)
    if exact:
        return format_currency(value, "INR", locale=LOCALE, format="¤#,##,##0.00####", currency_digits=False)
    if micros and abs(value) < PAISE:
        return ("-" if micros < 0 else "") + "<₹0.01"
    return format_currency(value.quantize(PAISE, ROUND_HALF_EVEN), "INR", locale=LOCALE)


def number(n: int | None) -> str:
    """12,34,567 (Indian grouping)."""
    return "—" if n is None else format_decimal(n, locale=LOCALE)


def zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


def when(ms: int | None, tz: ZoneInfo, pattern: str = "d MMM y, HH:mm") -> str:
    """An epoch-millisecond time in the zone: '5 Dec 2026, 11:07'."""
    if ms is None:
        return "never"
    return format_datetime(datetime.fromtimestamp(ms / 1000, UTC), pattern, tzinfo=tz, locale=LOCALE)


def iso(ms: int | None, tz: ZoneInfo) -> str:
    """For <time datetime=...>."""
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")
