"""Charts as SVG drawn on the server (no script, no CDN): bars per day, stacked when there is
more than one series, and horizontal bars for shares. Every bar carries a <title> (the
browser's tooltip) and the chart a text description; colours are SVG attributes, which the
dashboard's Content-Security-Policy allows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#0b5cad", "#f59e0b", "#1a7f37", "#8250df", "#b42318", "#57606a")
W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 84, 8, 10, 30


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]


def nice_max(v: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above v (at least 1)."""
    if v <= 1:
        return 1
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= v:
                return m * k
        k *= 10


def _text(x: float, y: float, s: str, anchor: str = "end", cls: str = "axis") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">{escape(s)}</text>'


def day_bars(labels: Sequence[str], series: Sequence[Series], *, title: str, fmt: Callable[[int], str],
             chart_id: str) -> Markup:
    """Bars per label (a day), the series stacked. `fmt` shows a value (₹, tokens...)."""
    n = len(labels)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    top = nice_max(max(totals, default=0))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = [(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
             f'xmlns="http://www.w3.org/2000/svg">'),
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">{escape(_describe(labels, totals, fmt))}</desc>']
    for frac in (0, 0.5, 1):
        y = TOP + ph - frac * ph
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid" '
                     f'stroke="#d0d7de" stroke-width="1"/>')
        parts.append(_text(LEFT - 6, y + 4, fmt(int(top * frac))))
    slot = pw / max(n, 1)
    bar_w = max(1.0, slot * 0.75)
    for i, label in enumerate(labels):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base: float = TOP + ph
        for j, s in enumerate(series):
            v = s.values[i]
            if v <= 0:
                continue
            h = v / top * ph
            base -= h
            tip = f"{label}: {fmt(v)}" + (f" {s.name}" if len(series) > 1 else "")
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(tip)}</title></rect>')
    for i in sorted({0, n // 2, n - 1}) if n else ():
        parts.append(_text(LEFT + i * slot + slot / 2, H - 10, labels[i], "middle"))
    parts.append("</svg>")
    return Markup("".join(parts))


def share_bars(rows: Sequence[tuple[str, int]], *, title: str, fmt: Callable[[int], str], chart_id: str) -> Markup:
    """One horizontal bar per (name, value), the longest the largest value."""
    top = max((v for _, v in rows), default=0) or 1
    row_h, label_w = 26, 250
    h = max(row_h * len(rows) + 8, 30)
    parts = [(f'<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-labelledby="{chart_id}-t" '
             f'xmlns="http://www.w3.org/2000/svg">'), f'<title id="{chart_id}-t">{escape(title)}</title>']
    for i, (name, v) in enumerate(rows):
        y = 4 + i * row_h
        width = (W - label_w - 110) * v / top
        short = name if len(name) <= 34 else name[:33] + "…"
        parts.append(_text(label_w - 8, y + 16, short))
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(width, 0.5):.1f}" height="{row_h - 8}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(f"{name}: {fmt(v)}")}</title></rect>')
        parts.append(_text(label_w + width + 6, y + 16, fmt(v), "start"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(labels: Sequence[str], totals: Sequence[int], fmt: Callable[[int], str]) -> str:
    if not labels:
        return "No data."
    peak = max(range(len(totals)), key=lambda i: totals[i])
    return (f"{len(labels)} days from {labels[0]} to {labels[-1]}; total {fmt(sum(totals))}; "
            f"highest {fmt(totals[peak])} on {labels[peak]}.")
