"""CLI output helpers: JSON on stdout; tables as Rich boxes on a terminal, and as fixed-width
plain text when stdout is not one (a pipe, a file), so no value is ever wrapped or cut."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import orjson

from aicredits.domain.money import format_inr

NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def inr(micros: int) -> str:
    return format_inr(micros)


def when(ms: int | None) -> str:
    """A time in milliseconds since the epoch, as 'YYYY-MM-DD HH:MM:SS' UTC."""
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")
    sys.stdout.flush()


def table(headers: list[str], rows: list[list]) -> None:
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    if not sys.stdout.isatty():
        sys.stdout.write(plain_table(headers, cells))
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table
    t = Table()
    for i, h in enumerate(headers):
        if i == 0:   # the id: whole and on one line, so it can be pasted back (keys revoke ID)
            width = max([len(h)] + [len(r[0]) for r in cells])
            t.add_column(h, no_wrap=True, min_width=width)
        else:        # never "…": long values fold onto more lines
            t.add_column(h, overflow="fold")
    for r in cells:
        t.add_row(*r)
    Console().print(t)


def plain_table(headers: list[str], cells: list[list[str]]) -> str:
    """One line per row, columns two spaces apart, each as wide as its widest value; numbers to
    the right. Easy to read, grep, cut and awk."""
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(NUMBER.match(r[i]) or r[i] in ("", "-") for r in cells)
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"
