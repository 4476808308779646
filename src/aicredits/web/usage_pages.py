"""Usage: requests, tokens and spend per day and per model as charts for a chosen range, and
the request log (filters, keyset pages, each charged call linked to its ledger entry)."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aicredits.domain.days import day_date, local_day
from aicredits.services.history import NotFound, UsageFilter
from aicredits.web import charts, params
from aicredits.web.core import context, render, signed_in, tz
from aicredits.web.formatting import inr, number

PAGE = 50
STATUSES = ("ok", "error")
CACHES = ("hit", "miss", "bypass")


def _label(day: int) -> str:
    d = day_date(day)
    return f"{d.day} {d.strftime('%b')}"


@signed_in
async def usage(request: Request) -> Response:
    ctx, zone, now = context(request), tz(request), int(time.time() * 1000)
    error, status = None, 200
    try:
        first, last = params.date_range(request, zone, now, default_days=30)
    except params.BadParam as exc:
        error, status = str(exc), 400
        last = local_day(now, zone)
        first = last - 29
    first = last - 29 if first is None else first       # (a default range: never None)
    days = {d.day: d for d in await ctx.history.daily(request.state.user.id, zone, first, last)}
    span = list(range(first, last + 1))
    labels = [_label(d) for d in span]

    def per_day(name: str) -> list[int]:
        return [days[d].usage_total(name) if d in days else 0 for d in span]

    models: dict[str, dict] = {}
    for d in days.values():
        for m, s in d.models.items():
            acc = models.setdefault(m or "(none)", dict.fromkeys(s, 0))
            for k, v in s.items():
                acc[k] += v
    by_model = sorted(models.items(), key=lambda kv: (-kv[1]["cost"], -kv[1]["requests"], kv[0]))
    totals = {k: sum(s[k] for s in models.values()) for k in
              ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "cost", "latency_ms")}
    requests_chart = charts.day_bars(labels, [charts.Series("requests", per_day("requests"))],
                                     title="Requests per day", fmt=number, chart_id="requests")
    tokens_chart = charts.day_bars(labels, [charts.Series("prompt", per_day("prompt_tokens")),
                                            charts.Series("completion", per_day("completion_tokens"))],
                                   title="Tokens per day (prompt and completion)", fmt=number, chart_id="tokens")
    spend_chart = charts.day_bars(labels, [charts.Series("spend", per_day("cost"))], title="Spend per day",
                                  fmt=inr, chart_id="spend")
    model_chart = charts.share_bars([(m, s["cost"]) for m, s in by_model[:12]], title="Spend per model",
                                    fmt=inr, chart_id="models")
    return await render(request, "usage.html", status_code=status, error=error, first=first, last=last,
                        iso_day=params.iso_day, totals=totals, by_model=by_model, requests_chart=requests_chart,
                        tokens_chart=tokens_chart, spend_chart=spend_chart, model_chart=model_chart)


@signed_in
async def requests_log(request: Request) -> Response:
    ctx, zone, now = context(request), tz(request), int(time.time() * 1000)
    user = request.state.user
    keys = await ctx.keys.list(user.id)
    error, status = None, 200
    try:
        first, last = params.date_range(request, zone, now, default_days=None, max_days=None)
        f = UsageFilter(model=params.text(request, "model") or None, key_id=params.text(request, "key", 32) or None,
                        status=params.choice(request, "status", STATUSES),
                        cache=params.choice(request, "cache", CACHES))
        before, after = params.cursor(request, "before"), params.cursor(request, "after")
    except params.BadParam as exc:
        error, status = str(exc), 400
        first, last, f, before, after = None, local_day(now, zone), UsageFilter(), None, None
    lo, hi = params.window(first, last, zone)
    try:
        page = await ctx.history.usage_page(user.id, f, lo=lo, hi=hi, before=before, after=after, limit=PAGE)
    except NotFound:
        raise HTTPException(404) from None      # another account's key id
    q = {k: v for k, v in {"from": params.iso_day(first), "to": params.iso_day(last), "model": f.model or "",
                           "key": f.key_id or "", "status": f.status or "", "cache": f.cache or ""}.items() if v}
    return await render(request, "requests.html", status_code=status, error=error, page=page, q=q, f=f,
                        first=first, last=last, keys=keys, iso_day=params.iso_day, cursor=params.cursor_of,
                        paged=before is not None or after is not None, reading_newer=after is not None,
                        statuses=STATUSES, caches=CACHES)


routes = [
    Route("/usage", usage, methods=["GET"], name="usage"),
    Route("/usage/requests", requests_log, methods=["GET"], name="requests"),
]
