"""Billing history: every ledger entry of the signed-in account with its balance after,
filtered by date and kind, by day (a day's charges on one line, opened by a click) or entry
by entry (keyset pages); one entry's page; the CSV export, streamed."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aicredits.domain.days import local_day
from aicredits.domain.ledger import KINDS, kinds_in_total
from aicredits.domain.money import format_inr
from aicredits.services.history import NotFound
from aicredits.web import params
from aicredits.web.core import context, render, signed_in, tz
from aicredits.web.formatting import iso

PAGE = 50
KIND_WORDS = {"grant": "grants", "topup": "top-ups", "refund": "less refunds"}
CSV_COLUMNS = ["entry_id", "time", "kind", "amount_inr", "balance_after_inr", "key_id", "call_id", "note"]


def _filters(request: Request, zone: ZoneInfo, now: int) -> dict:
    first, last = params.date_range(request, zone, now, default_days=None, max_days=None)
    kind = params.choice(request, "kind", KINDS)
    view = params.choice(request, "view", ("days", "entries")) or "days"
    return {"first": first, "last": last, "kind": kind, "view": view}


def _query(f: dict, **more: object) -> dict:
    """The filters as query parameters for links (empty ones left out)."""
    q = {"from": params.iso_day(f["first"]), "to": params.iso_day(f["last"]), "kind": f["kind"] or "",
         "view": f["view"]}
    q.update(more)
    return {k: v for k, v in q.items() if v not in ("", None)}


@signed_in
async def billing(request: Request) -> Response:
    ctx, zone, now = context(request), tz(request), int(time.time() * 1000)
    user = request.state.user
    error, status = None, 200
    try:
        f = _filters(request, zone, now)
        before, after = params.cursor(request, "before"), params.cursor(request, "after")
        page_day = params.day(request, "day")
    except params.BadParam as exc:
        error, status = str(exc), 400
        f = {"first": None, "last": local_day(now, zone), "kind": None, "view": "days"}
        before = after = page_day = None
    kinds = (f["kind"],) if f["kind"] else ()
    summary = await ctx.overview.of(user.id)
    # one read of the ledger's daily sums serves the range totals and the page's days
    days = await ctx.history.ledger_daily(user.id, zone, f["first"] if f["first"] is not None else 0, f["last"])
    totals = await ctx.history.ledger_totals(user.id, zone, 0, f["last"], days)
    values = {"f": f, "q": _query(f), "summary": summary, "totals": totals, "kinds": KINDS,
              "net": sum(t["amount"] for t in totals.values()), "iso_day": params.iso_day, "cursor": params.cursor_of,
              # the wallet's own totals, by domain/ledger.py's rules: what counts as added, as spent
              "added": sum(totals.get(k, {}).get("amount", 0) for k in kinds_in_total("added")),
              "spent": -sum(totals.get(k, {}).get("amount", 0) for k in kinds_in_total("spent")),
              "calls": totals.get("charge", {}).get("entries", 0),
              "added_kinds": ", ".join(KIND_WORDS.get(k, k) for k in kinds_in_total("added"))}
    if f["view"] == "days":
        last = f["last"] if page_day is None else min(page_day, f["last"])
        values["days"] = await ctx.history.billing_days(user.id, zone, first=f["first"], last=f["last"],
                                                        page_last=last, kinds=kinds, days=days)
    else:
        lo, hi = params.window(f["first"], f["last"], zone)
        values["page"] = await ctx.history.ledger_page(user.id, lo=lo, hi=hi, kinds=kinds, before=before,
                                                       after=after, limit=PAGE)
        values["paged"] = before is not None or after is not None
        values["reading_newer"] = after is not None
    return await render(request, "billing.html", status_code=status, error=error, **values)


@signed_in
async def entry(request: Request) -> Response:
    ctx = context(request)
    try:
        e = await ctx.history.entry(request.state.user.id, request.path_params["entry_id"])
    except NotFound:
        raise HTTPException(404) from None
    return await render(request, "entry.html", e=e)


def _safe(text: str | None) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    text = text or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@signed_in
async def billing_csv(request: Request) -> Response:
    ctx, zone, now = context(request), tz(request), int(time.time() * 1000)
    try:
        f = _filters(request, zone, now)
    except params.BadParam as exc:
        raise HTTPException(400, str(exc)) from None
    lo, hi = params.window(f["first"], f["last"], zone)
    account_id = request.state.user.id
    kinds = (f["kind"],) if f["kind"] else ()

    async def rows() -> AsyncIterator[bytes]:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\r\n")
        out.writerow(CSV_COLUMNS)
        yield buf.getvalue().encode()
        async for batch in ctx.history.ledger_batches(account_id, lo=lo, hi=hi, kinds=kinds):
            buf.seek(0)
            buf.truncate()
            out.writerows([entry_id, iso(at, zone), kind, format_inr(amount), format_inr(after), key_id or "",
                           call_id or "", _safe(note)]
                          for entry_id, at, kind, amount, after, key_id, call_id, note in batch)
            yield buf.getvalue().encode()

    name = f"aicredits-ledger-{params.iso_day(f['first']) or 'start'}-to-{params.iso_day(f['last'])}.csv"
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})


routes = [
    Route("/billing", billing, methods=["GET"], name="billing"),
    Route("/billing.csv", billing_csv, methods=["GET"], name="billing_csv"),
    Route("/billing/entries/{entry_id:int}", entry, methods=["GET"], name="billing_entry"),
]
