"""Admin pages that read (admin role; anyone else gets 404): the model catalog with the INR
prices in force and the operator's overrides, provider status (circuit breakers, recent
error rate and latency), and the audit log (append-only; filter, keyset pages, CSV export)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aicredits.services.operator import ACTIONS, action_name
from aicredits.web.admin_pages import render_admin
from aicredits.web.core import admin_only, context, tz
from aicredits.web.formatting import inr, iso

PAGE = 100
MONEY_KEYS = ("amount", "balance_after", "limit")     # micro-INR in audit details
CSV_COLUMNS = ["id", "time", "actor_id", "actor", "action", "target", "ip", "detail"]


@admin_only
async def models(request: Request) -> Response:
    runtime = context(request).runtime
    rows = runtime.catalog_rows() if runtime else []
    rates = None
    if runtime:   # for reading only: money never passes through these floats
        rates = {"usd_inr": f"{float(runtime.rates.usd_inr):g}", "markup": f"{float(runtime.rates.markup * 100):g}"}
    return await render_admin(request, "admin_models.html", rows=rows, rates=rates)


@admin_only
async def providers(request: Request) -> Response:
    ctx = context(request)
    rows = await ctx.runtime.provider_status(ctx.engine) if ctx.runtime else []
    return await render_admin(request, "admin_providers.html", rows=rows)


async def _audit_filter(request: Request) -> tuple[str | None, str, int | None]:
    """(action, actor email as typed, that actor's account id); 400 for an unknown action, and
    an actor with no account matches nothing (-1)."""
    action = request.query_params.get("action", "").strip() or None
    if action is not None and not action_name(action):
        raise HTTPException(400, f"'{action[:64]}' is not an action's name.")
    who = request.query_params.get("actor", "").strip()[:320]
    actor_id = None
    if who:
        actor_id = await context(request).operator.account_id_of(who) or -1
    return action, who, actor_id


@admin_only
async def audit_log(request: Request) -> Response:
    try:
        action, who, actor_id = await _audit_filter(request)
    except HTTPException as exc:
        return await render_admin(request, "admin_audit.html", status_code=400, error=exc.detail, rows=[], more=False,
                            actions=ACTIONS, action=None, who="", q={}, paged=False, detail_items=detail_items)
    before = request.query_params.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 10 else None
    rows = await context(request).audit.recent(limit=PAGE + 1, before_id=before_id, action=action, actor_id=actor_id)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    q = {k: v for k, v in {"action": action or "", "actor": who}.items() if v}
    return await render_admin(request, "admin_audit.html", rows=rows, more=more, actions=ACTIONS, action=action, who=who,
                        q=q, paged=before_id is not None, detail_items=detail_items)


def detail_items(detail: dict) -> list[tuple[str, str]]:
    """An audit row's detail for people: amounts in rupees, no value shown as 'none'."""
    out = []
    for k, v in sorted(detail.items()):
        if v is None:
            text = "none"
        elif k in MONEY_KEYS and isinstance(v, int) and not isinstance(v, bool):
            text = inr(v, exact=True)
        else:
            text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        out.append((k, text))
    return out


@admin_only
async def audit_csv(request: Request) -> Response:
    action, _, actor_id = await _audit_filter(request)
    operator, zone = context(request).operator, tz(request)

    async def lines() -> AsyncIterator[bytes]:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\r\n")
        out.writerow(CSV_COLUMNS)
        yield buf.getvalue().encode()
        async for batch in operator.audit_batches(action=action, actor_id=actor_id):
            buf.seek(0)
            buf.truncate()
            out.writerows([row_id, iso(at, zone), who_id or "", _safe(who), act, _safe(target), ip or "", _safe(detail)]
                          for row_id, at, who_id, who, act, target, ip, detail in batch)
            yield buf.getvalue().encode()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": 'attachment; filename="aicredits-audit-log.csv"', "cache-control": "no-store"})


def _safe(text: object) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    text = text if isinstance(text, str) else json.dumps(text, separators=(",", ":"), sort_keys=True)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


routes = [
    Route("/admin/models", models, methods=["GET"], name="admin_models"),
    Route("/admin/providers", providers, methods=["GET"], name="admin_providers"),
    Route("/admin/audit", audit_log, methods=["GET"], name="admin_audit"),
    Route("/admin/audit.csv", audit_csv, methods=["GET"], name="admin_audit_csv"),
]
