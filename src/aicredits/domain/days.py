"""Calendar days in a time zone, for the billing history and the usage charts.

Times are epoch milliseconds (UTC). A day is a local calendar date, numbered from 1970-01-01
(day 0), so `(t + utc_offset(t)) // DAY_MS` is the day of instant t. Where a zone changes its
offset (summer time), a time range is cut into `segments` of one offset each, so SQL can group
a segment's rows with plain integer arithmetic and still put every row in its local day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1)


def day_number(d: date) -> int:
    return (d - EPOCH).days


def day_date(n: int) -> date:
    return EPOCH + timedelta(days=n)


def parse_day(text: str) -> int:
    """'2026-12-05' -> its day number; ValueError for anything else."""
    return day_number(date.fromisoformat(text.strip()))


def offset_ms(t: int, tz: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(t / 1000, UTC).astimezone(tz).utcoffset()
    assert offset is not None    # an aware datetime's
    return int(offset.total_seconds() * 1000)


def local_day(t: int, tz: ZoneInfo) -> int:
    """The local day of instant t."""
    return (t + offset_ms(t, tz)) // DAY_MS


def day_start(day: int, tz: ZoneInfo) -> int:
    """The instant (epoch ms) the local day begins."""
    local = datetime.combine(day_date(day), time(0), tzinfo=tz)
    return int(local.timestamp() * 1000)


@dataclass(frozen=True)
class Segment:
    lo: int          # epoch ms, inclusive
    hi: int          # epoch ms, exclusive
    offset: int      # the zone's UTC offset throughout, in ms


def _transition(a: int, b: int, tz: ZoneInfo) -> int:
    """The first millisecond in (a, b] whose offset differs from a's."""
    base = offset_ms(a, tz)
    while b - a > 1:
        mid = (a + b) // 2
        if offset_ms(mid, tz) == base:
            a = mid
        else:
            b = mid
    return b


def segments(lo: int, hi: int, tz: ZoneInfo) -> list[Segment]:
    """[lo, hi) cut where the zone's offset changes (at most a few cuts a year)."""
    if hi <= lo:
        return []
    out, start, step = [], lo, DAY_MS // 2   # offsets never change twice within 12 hours
    probe = lo
    while probe < hi:
        nxt = min(probe + step, hi - 1)
        if nxt <= probe:
            break
        if offset_ms(nxt, tz) != offset_ms(probe, tz):
            cut = _transition(probe, nxt, tz)
            out.append(Segment(start, cut, offset_ms(start, tz)))
            start = cut
        probe = nxt
    out.append(Segment(start, hi, offset_ms(start, tz)))
    return out
