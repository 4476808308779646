"""CLI output helpers: JSON on stdout, Rich tables for people."""

from __future__ import annotations

import sys

import orjson
from rich.console import Console
from rich.table import Table

from aicredits.domain.money import format_inr


def inr(micros: int) -> str:
    return format_inr(micros)


def print_json(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")
    sys.stdout.flush()


def table(headers: list[str], rows: list[list]) -> None:
    t = Table()
    for i, h in enumerate(headers):
        if i == 0:   # the id: whole and on one line, so it can be pasted back (keys revoke ID)
            width = max([len(h)] + [len(str(r[0])) for r in rows])
            t.add_column(h, no_wrap=True, min_width=width)
        else:        # never "…": long values fold onto more lines
            t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    Console().print(t)
