"""The admin API's bodies (/admin/api, api/admin_api.py) as pydantic models: /openapi.json's
schemas for them (api/openapi.py), and what tests/api/test_admin_api.py validates real answers
against. Money is INR as numbers beside exact micro-INR integers (`*_micros`); times are epoch
milliseconds (`created_at`) and ISO 8601 (`time`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KIND = Literal["grant", "topup", "refund", "charge", "debit", "adjustment", "correction"]
Amount = float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------ answers
class AdminKey(Strict):
    object: Literal["key"]
    id: str
    user_id: int
    name: str
    display: str = Field(description="The key's short form, sk-abcd…wxyz.")
    limit: float | None = Field(description="The key's own credit limit in INR; null: only the wallet limits it.")
    spent: float = Field(description="INR charged through this key.")
    rpm: int | None
    tpm: int | None
    created_at: int
    revoked: bool
    revoked_at: int | None
    expires_at: int | None = Field(description="Epoch ms from which the key is refused (401); null: never.")
    models: list[str] | None = Field(description="Glob patterns of the models it may call (403 for others); "
                                                  "null: every model.")
    key: str | None = Field(None, description="The secret (sk-<64 hex>): only in the answer to its creation.")
    changed: bool | None = Field(None, description="Revoke only: false when it was revoked already.")


class AdminUser(Strict):
    object: Literal["user"]
    id: int
    email: str
    name: str
    role: Literal["user", "admin"]
    created_at: int
    disabled: bool
    disabled_at: int | None
    balance: float = Field(description="The wallet balance, INR.")
    balance_micros: int = Field(description="The same, micro-INR, exact.")
    held: float = Field(description="INR held by calls in flight.")
    total_added: float
    total_spent: float
    keys: list[AdminKey] | None = Field(None, description="On the answers about one user.")


class AdminLedgerEntry(Strict):
    object: Literal["ledger_entry"]
    id: int
    user_id: int
    created_at: int
    time: str
    kind: KIND
    amount: float = Field(description="Signed INR: charges, debits and refunds are negative.")
    amount_micros: int
    balance_after: float
    balance_after_micros: int
    key_id: str | None
    call_id: str | None
    note: str


class AdminCall(Strict):
    object: Literal["call"]
    id: int
    call_id: str
    request_id: str
    created_at: int
    time: str
    key_id: str | None
    model: str
    provider: str
    endpoint: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    units: int
    cost: float
    cost_micros: int
    latency_ms: int
    status: int
    cache: str
    end_state: str
    ledger_entry_id: int | None = Field(description="The call's charge entry; null when nothing was charged.")


class AdminUsageDay(Strict):
    object: Literal["usage_day"]
    date: str = Field(description="A calendar day in `tz`, YYYY-MM-DD.")
    model: str
    requests: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cost_micros: int
    latency_ms_total: int


class AdminAuditEvent(Strict):
    object: Literal["audit_event"]
    id: int
    created_at: int
    time: str
    actor_id: int | None
    actor: str = Field(description="An email (through the admin API with the key's short form), or cli, system.")
    action: str
    target: str
    ip: str | None
    detail: dict[str, Any]


class AdminCredits(Strict):
    object: Literal["credits"]
    user_id: int
    kind: Literal["grant", "debit"]
    amount: float
    balance: float
    balance_micros: int
    entry: AdminLedgerEntry | None


class _List(Strict):
    object: Literal["list"]
    has_more: bool


class AdminUserList(_List):
    data: list[AdminUser]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last.")


class AdminKeyList(_List):
    data: list[AdminKey]


class AdminLedgerPage(_List):
    data: list[AdminLedgerEntry]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page; null on the last.")


class AdminCallPage(_List):
    data: list[AdminCall]
    next_before: str | None


class AdminUsageDays(_List):
    data: list[AdminUsageDay]
    tz: str


class AdminAuditPage(_List):
    data: list[AdminAuditEvent]
    next_before: int | None


# ------------------------------------------------------------------------------ requests
class AdminCreateUser(BaseModel):
    email: str
    name: str | None = None
    role: Literal["user", "admin"] = "user"
    password: str | None = Field(None, description="At least 10 characters; without one the user signs in after "
                                                   "a password reset or through OpenID Connect.")
    credits: Amount | None = Field(None, description="INR granted to the new user first (at most 6 decimals).")
    reason: str | None = Field(None, description="The note on that grant.")


class AdminCreditsRequest(BaseModel):
    kind: Literal["grant", "debit"] = "grant"
    amount: Amount = Field(description="INR, more than 0, at most 6 decimals and 1000000000.")
    reason: str = Field(min_length=1, max_length=500, description="Kept as the entry's note and in the audit log.")


class AdminCreateKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    limit: Amount | None = Field(None, description="The key's credit limit, INR.")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    expires: str | None = Field(None, description="When the key stops working: a duration from now (12h, 30d, "
                                                  "2w) or an ISO date or date-time (UTC when no offset).")
    models: list[str] | None = Field(None, description="Model ids or glob patterns ('openai/*') it may call.")


class AdminUpdateKey(BaseModel):
    limit: Amount | None = Field(None, description="INR; null removes it. Fields left out stay.")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    expires: str | None = Field(None, description="A new expiry: a duration from now (12h, 30d, 2w) or an ISO date "
                                                  "or date-time (UTC when no offset); null: never expires.")
    expires_at: int | None = Field(None, ge=1, description="A new expiry as epoch ms (in the future); null: never "
                                                            "expires. Give `expires` or `expires_at`, not both.")
    models: list[str] | None = Field(None, description="A new model allow-list: ids or glob patterns ('openai/*'); "
                                                       "null: every model.")
