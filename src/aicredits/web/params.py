"""Query parameters of the history pages: dates, page cursors and choices, checked strictly
(a bad value is a clear message, never a 500)."""

from __future__ import annotations

import re
from collections.abc import Collection
from zoneinfo import ZoneInfo

from starlette.requests import Request

from aicredits.domain.days import day_date, day_start, local_day, parse_day

CURSOR_RE = re.compile(r"^(\d{1,15})\.(\d{1,10})$")
MAX_ID = 2**31 - 1             # ids are INTEGER columns
MAX_RANGE_DAYS = 400


class BadParam(ValueError):
    """A parameter the page cannot use, with a message fit to show."""


def text(request: Request, name: str, max_len: int = 200) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > max_len:
        raise BadParam(f"'{name}' is too long.")
    return value


def day(request: Request, name: str) -> int | None:
    value = text(request, name, 20)
    if not value:
        return None
    try:
        return parse_day(value)
    except ValueError:
        raise BadParam(f"'{value}' is not a date: use YYYY-MM-DD, like 2026-12-05.") from None


def cursor(request: Request, name: str) -> tuple[int, int] | None:
    value = text(request, name, 40)
    if not value:
        return None
    m = CURSOR_RE.match(value)
    if not m or int(m.group(2)) > MAX_ID:
        raise BadParam("This page link is malformed: go back to the first page.")
    return int(m.group(1)), int(m.group(2))


def cursor_of(row: dict) -> str:
    return f"{row['created_at']}.{row['id']}"


def choice(request: Request, name: str, allowed: Collection[str]) -> str | None:
    value = text(request, name, 64)
    if not value:
        return None
    if value not in allowed:
        raise BadParam(f"'{value}' is not one of: {', '.join(allowed)}.")
    return value


def iso_day(n: int | None) -> str:
    return "" if n is None else day_date(n).isoformat()


def date_range(request: Request, tz: ZoneInfo, now_ms: int, *, default_days: int | None,
               max_days: int | None = MAX_RANGE_DAYS) -> tuple[int | None, int]:
    """(first day or None: from the beginning, last day) from ?from=&to=; `default_days`: the
    range when `from` is absent (None: from the beginning)."""
    today = local_day(now_ms, tz)
    first, last = day(request, "from"), day(request, "to")
    last = today if last is None else last
    if first is None and default_days is not None:
        first = last - default_days + 1
    if first is not None and first > last:
        raise BadParam("The start date is after the end date.")
    if max_days is not None and first is not None and last - first + 1 > max_days:
        raise BadParam(f"Choose at most {max_days} days.")
    return first, last


def window(first: int | None, last: int, tz: ZoneInfo) -> tuple[int | None, int]:
    """The epoch-ms [lo, hi) of the days [first, last]."""
    return (None if first is None else day_start(first, tz)), day_start(last + 1, tz)
