"""The admin API's JSON: how rows are shown (INR numbers beside exact micro-INR integers, times
as epoch milliseconds and ISO 8601) and how query and body fields are read (a bad one is a
400 in the reference's error shape naming the field)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aicredits.domain.days import day_date, day_start, local_day, parse_day
from aicredits.domain.keys import parse_expiry, parse_model_patterns
from aicredits.domain.money import inr_to_micros, micros_to_inr
from aicredits.errors import InvalidRequest

CURSOR_RE = re.compile(r"^(\d{1,15})\.(\d{1,10})$")
MAX_ID = 2**31 - 1


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def iso_date(day: int) -> str:
    return day_date(day).isoformat()


def money(micros: int | None) -> float | None:
    return None if micros is None else micros_to_inr(micros)


def user_json(u: dict) -> dict:
    out = {"object": "user", "id": u["id"], "email": u["email"], "name": u["name"], "role": u["role"],
           "created_at": u["created_at"], "disabled": u["disabled_at"] is not None, "disabled_at": u["disabled_at"],
           "balance": money(u["balance"] or 0), "balance_micros": u["balance"] or 0,
           "held": money(u["held"] or 0), "total_added": money(u["total_added"] or 0),
           "total_spent": money(u["total_spent"] or 0)}
    if "keys" in u:
        out["keys"] = [key_json(k) for k in u["keys"]]
    return out


def key_json(k: dict) -> dict:
    return {"object": "key", "id": k["id"], "user_id": k["account_id"], "name": k["name"], "display": k["display"],
            "limit": money(k["limit"]), "spent": money(k["spent"]), "rpm": k["rpm"], "tpm": k["tpm"],
            "created_at": k["created_at"], "revoked": k["revoked_at"] is not None, "revoked_at": k["revoked_at"],
            "expires_at": k.get("expires_at"), "models": k.get("models")}


def expiry(b: dict, name: str = "expires") -> int | None:
    """A key's expiry: a duration from now (`30d`) or an ISO date or date-time; null/absent: never."""
    value = b.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string: a duration such as 30d, or an ISO date.", param=name)
    try:
        return parse_expiry(value, int(time.time() * 1000))
    except ValueError as exc:
        raise InvalidRequest(f"'{name}': {exc}.", param=name) from None


MAX_EPOCH_MS = 253_402_300_799_999     # 9999-12-31T23:59:59.999Z


def expiry_at(b: dict, name: str = "expires_at") -> int | None:
    """A key's expiry as epoch milliseconds, in the future; null: never."""
    value = b.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_EPOCH_MS:
        raise InvalidRequest(f"'{name}' must be epoch milliseconds (an integer), or null for no expiry.", param=name)
    if value <= time.time() * 1000:
        raise InvalidRequest(f"'{name}' is in the past.", param=name)
    return value


def model_patterns(b: dict, name: str = "models") -> tuple[str, ...] | None:
    """A key's model allow-list: an array of ids or glob patterns; null/absent: every model."""
    value = b.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and "," not in v for v in value):
        raise InvalidRequest(f"'{name}' must be an array of model ids or glob patterns.", param=name)
    try:
        return parse_model_patterns(",".join(value))
    except ValueError as exc:
        raise InvalidRequest(f"'{name}': {exc}.", param=name) from None


def entry_json(e: dict) -> dict:
    return {"object": "ledger_entry", "id": e["id"], "user_id": e["account_id"], "created_at": e["created_at"],
            "time": iso(e["created_at"]), "kind": e["kind"], "amount": money(e["amount"]),
            "amount_micros": e["amount"], "balance_after": money(e["balance_after"]),
            "balance_after_micros": e["balance_after"], "key_id": e["key_id"], "call_id": e["call_id"],
            "note": e["note"]}


def call_json(r: dict) -> dict:
    return {"object": "call", "id": r["id"], "call_id": r["call_id"], "request_id": r["request_id"],
            "created_at": r["created_at"], "time": iso(r["created_at"]), "key_id": r["key_id"], "model": r["model"],
            "provider": r["provider"], "endpoint": r["endpoint"], "stream": bool(r["stream"]),
            "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
            "cache_read_tokens": r["cache_read_tokens"], "reasoning_tokens": r["reasoning_tokens"],
            "units": r["units"], "cost": money(r["cost"]), "cost_micros": r["cost"], "latency_ms": r["latency_ms"],
            "status": r["status"], "cache": r["cache"], "end_state": r["end_state"],
            "ledger_entry_id": r.get("entry_id")}


def audit_json(a: dict) -> dict:
    return {"object": "audit_event", "id": a["id"], "created_at": a["created_at"], "time": iso(a["created_at"]),
            "actor_id": a["actor_id"], "actor": a["actor"], "action": a["action"], "target": a["target"],
            "ip": a["ip"], "detail": a["detail"]}


def cursor_text(row: dict) -> str:
    return f"{row['created_at']}.{row['id']}"


# ---------------------------------------------------------------- reading input
def cursor(value: str | None, name: str = "before") -> tuple[int, int] | None:
    if not value:
        return None
    m = CURSOR_RE.match(value)
    if not m or int(m.group(2)) > MAX_ID:
        raise InvalidRequest(f"'{name}' is the next_{name} value of a previous page.", param=name)
    return int(m.group(1)), int(m.group(2))


@overload
def int_param(value: str | None, name: str, *, default: int, low: int, high: int) -> int: ...
@overload
def int_param(value: str | None, name: str, *, default: None, low: int, high: int) -> int | None: ...
def int_param(value: str | None, name: str, *, default: int | None, low: int, high: int) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}.", param=name)
    return int(value)


def zone(value: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(value or default)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"'tz' is not a time zone name: {value!r}.", param="tz") from None


def days(q: Mapping[str, str], tz: ZoneInfo, now_ms: int, *, default_days: int | None,
         max_days: int | None = None) -> tuple[int | None, int, int | None, int]:
    """(first day, last day, lo ms, hi ms) from `from`/`to` (YYYY-MM-DD in `tz`)."""
    parsed = {}
    for name in ("from", "to"):
        v = q.get(name)
        try:
            parsed[name] = parse_day(v) if v else None
        except ValueError:
            raise InvalidRequest(f"'{name}' must be a date, YYYY-MM-DD.", param=name) from None
    last = parsed["to"] if parsed["to"] is not None else local_day(now_ms, tz)
    first = parsed["from"]
    if first is None and default_days is not None:
        first = last - default_days + 1
    if first is not None and first > last:
        raise InvalidRequest("'from' is after 'to'.", param="from")
    if max_days is not None and first is not None and last - first + 1 > max_days:
        raise InvalidRequest(f"Ask for at most {max_days} days.", param="from")
    return first, last, (None if first is None else day_start(first, tz)), day_start(last + 1, tz)


@overload
def amount(body: dict, name: str, *, required: Literal[True]) -> int: ...
@overload
def amount(body: dict, name: str, *, required: bool) -> int | None: ...
def amount(body: dict, name: str, *, required: bool) -> int | None:
    """An INR amount (a JSON number or a decimal string, at most 6 decimals) as micro-INR."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidRequest(f"'{name}' is required: an INR amount such as 100 or 99.5.", param=name)
        return None
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise InvalidRequest(f"'{name}' must be an INR amount such as 100 or 99.5.", param=name)
    try:
        micros = inr_to_micros(v)
    except (ValueError, TypeError):
        raise InvalidRequest(f"'{name}' must be an INR amount with at most 6 decimals.", param=name) from None
    if micros <= 0:
        raise InvalidRequest(f"'{name}' must be more than 0.", param=name)
    return micros


def optional_int(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRequest(f"'{name}' must be a whole number, or null.", param=name)
    return v


def text(body: dict, name: str, *, required: bool = False, default: str = "") -> str:
    v = body.get(name, None)
    if v is None:
        if required:
            raise InvalidRequest(f"'{name}' is required.", param=name)
        return default
    if not isinstance(v, str):
        raise InvalidRequest(f"'{name}' must be a string.", param=name)
    return v
