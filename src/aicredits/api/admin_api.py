"""The admin API under /admin/api: JSON for scripts, doing what the admin pages do (create and
disable users, create and revoke their keys with limits, grant or debit credits, read their
ledger and usage, read the audit log), authenticated by admin API keys (`sk-admin-...`,
services/admin_keys.py) and never by inference keys. Errors have the reference's shape
{"error": {"message", "type", "code"}}. Every change is audited with the admin key's owner
as the actor. api/openapi.py documents each route (bodies: api/admin_schemas.py)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aicredits.api import admin_json as j
from aicredits.domain.ledger import KINDS
from aicredits.errors import GatewayError, InternalError, InvalidRequest, MethodNotAllowed, NotFound
from aicredits.services.admin_keys import AdminKeyAuthenticator
from aicredits.services.audit import Actor, Audit
from aicredits.services.history import History, UsageFilter
from aicredits.services.history import NotFound as HistoryNotFound
from aicredits.services.operator import ACTIONS, MAX_AMOUNT, Operator, OperatorError, action_name
from aicredits.services.operator import NotFound as OperatorNotFound

MAX_BODY = 64 * 1024
log = logging.getLogger("aicredits.admin_api")
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class AdminServices:
    """What the admin API's endpoints use (built by wiring/, on the dashboard's engine)."""
    keys: AdminKeyAuthenticator
    operator: Operator
    history: History
    audit: Audit
    timezone: str
    trust_proxy: bool


def ok(obj: object, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def listing(rows: list[dict], more: bool, **cursor: object) -> Response:
    return ok({"object": "list", "data": rows, "has_more": more, **cursor})


def services(request: Request) -> AdminServices:
    return request.app.state.services


def client_ip(request: Request) -> str | None:
    s = services(request)
    if s.trust_proxy:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64]
    return request.client.host if request.client else None


def admin(handler: Endpoint) -> Endpoint:
    """The admin key checked first; the actor is its owner, named with the key."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        key = await services(request).keys.authenticate(request.headers.get("authorization"))
        request.state.actor = Actor(key.account_id, f"{key.email} ({key.display})", client_ip(request))
        return await handler(request)
    return endpoint


async def body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"The request body is larger than {MAX_BODY} bytes.")
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return value


def path_id(request: Request, name: str = "user_id") -> int:
    value = request.path_params[name]
    if not value.isdigit() or not 0 < int(value) <= j.MAX_ID:
        raise NotFound(f"No user with id {value}.")
    return int(value)


async def user_or_404(request: Request, account_id: int) -> dict:
    try:
        return await services(request).operator.user(account_id)
    except OperatorNotFound:
        raise NotFound(f"No user with id {account_id}.") from None


# ---------------------------------------------------------------- users
@admin
async def list_users(request: Request) -> Response:
    q = request.query_params
    limit = j.int_param(q.get("limit"), "limit", default=50, low=1, high=200)
    after = j.int_param(q.get("after"), "after", default=None, low=0, high=j.MAX_ID)
    rows = await services(request).operator.users(q.get("q", ""), after_id=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return listing([j.user_json(u) for u in rows], more, next_after=rows[-1]["id"] if more else None)


@admin
async def create_user(request: Request) -> Response:
    b = await body(request)
    credits = j.amount(b, "credits", required=False)      # checked before anything is created
    reason = j.text(b, "reason", default="admin API: new user's credits")
    if credits and credits > MAX_AMOUNT:
        raise InvalidRequest("'credits' is at most 1000000000 INR.", param="credits")
    u = await services(request).operator.create_user(
        request.state.actor, j.text(b, "email", required=True), name=j.text(b, "name"),
        role=j.text(b, "role", default="user"), password=j.text(b, "password") or None)
    if credits:
        await services(request).operator.adjust(request.state.actor, u["id"], "grant", credits, reason)
    return ok(j.user_json(await user_or_404(request, u["id"])), 201)


@admin
async def get_user(request: Request) -> Response:
    return ok(j.user_json(await user_or_404(request, path_id(request))))


async def _disabled(request: Request, disabled: bool) -> Response:
    account_id = path_id(request)
    await user_or_404(request, account_id)
    await services(request).operator.set_disabled(request.state.actor, account_id, disabled)
    return ok(j.user_json(await user_or_404(request, account_id)))


@admin
async def disable_user(request: Request) -> Response:
    return await _disabled(request, True)


@admin
async def enable_user(request: Request) -> Response:
    return await _disabled(request, False)


@admin
async def credits(request: Request) -> Response:
    account_id = path_id(request)
    b = await body(request)
    kind = j.text(b, "kind", default="grant")
    amount = j.amount(b, "amount", required=True)
    balance = await services(request).operator.adjust(request.state.actor, account_id, kind, amount,
                                                      j.text(b, "reason", required=True))
    page = await services(request).history.ledger_page(account_id, kinds=(kind,), limit=1)
    return ok({"object": "credits", "user_id": account_id, "kind": kind, "amount": j.money(amount),
               "balance": j.money(balance), "balance_micros": balance,
               "entry": j.entry_json(page.rows[0]) if page.rows else None}, 201)


# ---------------------------------------------------------------- keys
@admin
async def list_keys(request: Request) -> Response:
    u = await user_or_404(request, path_id(request))
    return listing([j.key_json(k) for k in u["keys"]], False)


@admin
async def create_key(request: Request) -> Response:
    account_id = path_id(request)
    b = await body(request)
    await user_or_404(request, account_id)
    secret, key = await services(request).operator.create_key(
        request.state.actor, account_id, name=j.text(b, "name", required=True),
        limit=j.amount(b, "limit", required=False), rpm=j.optional_int(b, "rpm"), tpm=j.optional_int(b, "tpm"),
        expires_at=j.expiry(b), models=j.model_patterns(b))
    return ok({**j.key_json(key), "key": secret}, 201)


def _key_id(request: Request) -> str:
    return request.path_params["key_id"][:64]


@admin
async def update_key(request: Request) -> Response:
    b = await body(request)
    changes: dict[str, int | tuple[str, ...] | None] = {}
    if "limit" in b:
        changes["limit"] = j.amount(b, "limit", required=False)
    for name in ("rpm", "tpm"):
        if name in b:
            changes[name] = j.optional_int(b, name)
    if "expires" in b and "expires_at" in b:
        raise InvalidRequest("Give 'expires' or 'expires_at', not both.", param="expires")
    if "expires" in b:
        changes["expires_at"] = j.expiry(b)
    if "expires_at" in b:
        changes["expires_at"] = j.expiry_at(b)
    if "models" in b:
        changes["models"] = j.model_patterns(b)
    try:
        key = await services(request).operator.set_key_limits(request.state.actor, _key_id(request), changes)
    except OperatorNotFound:
        raise NotFound(f"No key with id {_key_id(request)}.") from None
    return ok(j.key_json(key))


@admin
async def revoke_key(request: Request) -> Response:
    op = services(request).operator
    try:
        changed = await op.revoke_key(request.state.actor, _key_id(request))
        key = await op.key(_key_id(request))
    except OperatorNotFound:
        raise NotFound(f"No key with id {_key_id(request)}.") from None
    return ok({**j.key_json(key), "changed": changed})


# ---------------------------------------------------------------- ledger, usage, audit
@admin
async def ledger(request: Request) -> Response:
    account_id = path_id(request)
    await user_or_404(request, account_id)
    s, q = services(request), request.query_params
    tz = j.zone(q.get("tz"), s.timezone)
    _, _, lo, hi = j.days(q, tz, int(time.time() * 1000), default_days=None)
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"'kind' is one of {', '.join(KINDS)}.", param="kind")
    page = await s.history.ledger_page(account_id, lo=lo, hi=hi, kinds=(kind,) if kind else (),
                                       before=j.cursor(q.get("before")),
                                       limit=j.int_param(q.get("limit"), "limit", default=50, low=1, high=200))
    return listing([j.entry_json(e) for e in page.rows], page.more,
                   next_before=j.cursor_text(page.rows[-1]) if page.more else None)


@admin
async def usage(request: Request) -> Response:
    account_id = path_id(request)
    await user_or_404(request, account_id)
    s, q = services(request), request.query_params
    tz = j.zone(q.get("tz"), s.timezone)
    _, _, lo, hi = j.days(q, tz, int(time.time() * 1000), default_days=None)
    status, cache = q.get("status") or None, q.get("cache") or None
    if status not in (None, "ok", "error"):
        raise InvalidRequest("'status' is ok or error.", param="status")
    if cache not in (None, "hit", "miss", "bypass"):
        raise InvalidRequest("'cache' is hit, miss or bypass.", param="cache")
    f = UsageFilter(model=q.get("model") or None, key_id=(q.get("key") or None), status=status, cache=cache)
    try:
        page = await s.history.usage_page(account_id, f, lo=lo, hi=hi, before=j.cursor(q.get("before")),
                                          limit=j.int_param(q.get("limit"), "limit", default=50, low=1, high=200))
    except HistoryNotFound:
        raise NotFound(f"User {account_id} has no key {f.key_id}.", param="key") from None
    return listing([j.call_json(r) for r in page.rows], page.more,
                   next_before=j.cursor_text(page.rows[-1]) if page.more else None)


@admin
async def usage_daily(request: Request) -> Response:
    account_id = path_id(request)
    await user_or_404(request, account_id)
    s, q = services(request), request.query_params
    tz = j.zone(q.get("tz"), s.timezone)
    first, last, _, _ = j.days(q, tz, int(time.time() * 1000), default_days=30, max_days=400)
    assert first is not None   # default_days gives one
    out = []
    for d in await s.history.daily(account_id, tz, first, last):
        for model, m in sorted(d.models.items()):
            out.append({"object": "usage_day", "date": j.iso_date(d.day), "model": model, **{
                k: m[k] for k in ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens")},
                "cost": j.money(m["cost"]), "cost_micros": m["cost"], "latency_ms_total": m["latency_ms"]})
    return listing(out, False, tz=tz.key)


@admin
async def audit_log(request: Request) -> Response:
    s, q = services(request), request.query_params
    action = q.get("action") or None
    if action is not None and not action_name(action):
        raise InvalidRequest(f"'action' is an action's name, such as {', '.join(ACTIONS[:4])}.", param="action")
    limit = j.int_param(q.get("limit"), "limit", default=100, low=1, high=500)
    before = j.int_param(q.get("before"), "before", default=None, low=1, high=j.MAX_ID)
    actor_id = j.int_param(q.get("actor_id"), "actor_id", default=None, low=1, high=j.MAX_ID)
    rows = await s.audit.recent(limit=limit + 1, before_id=before, action=action, actor_id=actor_id)
    more = len(rows) > limit
    rows = rows[:limit]
    return listing([j.audit_json(a) for a in rows], more, next_before=rows[-1]["id"] if more else None)


# ---------------------------------------------------------------- the app
def by_method(**handlers: Endpoint) -> Endpoint:
    """One endpoint for a path served by several methods (so a 405 names all of them in Allow)."""
    async def endpoint(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)
    return endpoint


ROUTES = [
    Route("/admin/api/users", by_method(GET=list_users, POST=create_user), methods=["GET", "POST"]),
    Route("/admin/api/users/{user_id}", get_user, methods=["GET"]),
    Route("/admin/api/users/{user_id}/disable", disable_user, methods=["POST"]),
    Route("/admin/api/users/{user_id}/enable", enable_user, methods=["POST"]),
    Route("/admin/api/users/{user_id}/credits", credits, methods=["POST"]),
    Route("/admin/api/users/{user_id}/keys", by_method(GET=list_keys, POST=create_key), methods=["GET", "POST"]),
    Route("/admin/api/users/{user_id}/ledger", ledger, methods=["GET"]),
    Route("/admin/api/users/{user_id}/usage", usage, methods=["GET"]),
    Route("/admin/api/users/{user_id}/usage/daily", usage_daily, methods=["GET"]),
    Route("/admin/api/keys/{key_id}", update_key, methods=["PATCH"]),
    Route("/admin/api/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    Route("/admin/api/audit", audit_log, methods=["GET"]),
]


def _error(exc: GatewayError) -> Response:
    return Response(exc.render(), status_code=exc.status, media_type="application/json",
                    headers={k.decode(): v.decode() for k, v in exc.headers()})


async def on_gateway_error(request: Request, exc: GatewayError) -> Response:
    return _error(exc)


async def on_refusal(request: Request, exc: OperatorError) -> Response:
    return _error(InvalidRequest(str(exc)))


async def on_missing(request: Request, exc: Exception) -> Response:
    return _error(NotFound(f"Not found: {request.url.path}."))


async def on_http(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        response = _error(MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."))
        allow = (exc.headers or {}).get("Allow")
        if allow:
            response.headers["allow"] = allow
        return response
    return _error(NotFound(f"Unknown route: {request.method} {request.url.path}."))


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("admin API error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(InternalError("The admin API failed to handle this request; it has been logged."))


def build(services: AdminServices) -> Starlette:
    handlers: dict[Any, Callable[[Request, Any], Awaitable[Response]]] = {
        GatewayError: on_gateway_error, OperatorError: on_refusal, OperatorNotFound: on_missing,
        HistoryNotFound: on_missing, HTTPException: on_http, Exception: on_crash}
    app = Starlette(routes=ROUTES, exception_handlers=handlers)
    app.state.services = services
    return app
