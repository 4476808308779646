"""GET /openapi.json, generated: every route is one `Operation` below, its bodies the pydantic
models of api/schemas.py. `document()` builds the OpenAPI 3.1 document once per process, on the
first request. tests/api/test_openapi.py fails when a route of wiring/routes.py (or the dashboard's
mount) has no operation here, and runs schemathesis against a live gateway from this document.

Adding routes (the admin API at /admin/api does so): write the body models (in api/schemas.py or
beside the routes), append an `Operation` per method to OPERATIONS, e.g.

    OPERATIONS.append(Operation("/admin/api/users", "get", "listUsers", "admin", "Users",
                                response=UserList, security="session", errors=(401, 403)))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aicredits import __version__
from aicredits.api import admin_schemas as a
from aicredits.api import schemas as s

REF = "#/components/schemas/{model}"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
ERRORS = {   # status -> (components/responses name, description)
    400: ("BadRequest", ("invalid_request_error: the body is empty, not JSON, or not a valid request; the model is "
                        "for another endpoint or has no price; more than 10,000 messages, input items or content "
                        "parts; or the provider rejected the request (400/422).")),
    401: ("Unauthorized", "authentication_error: the key is missing, malformed, unknown, revoked or expired."),
    402: ("PaymentRequired", ("insufficient_credits: the call's worst-case cost does not fit in the wallet or the "
                             "key's limit. Nothing is sent upstream.")),
    403: ("Forbidden", ("permission_error: the key's model allow-list does not include the model (or a model of "
                        "the request's `models`). Nothing is sent upstream.")),
    404: ("NotFound", ("not_found_error: unknown route or model, a model whose provider is not configured, or the "
                      "provider answered 404.")),
    405: ("MethodNotAllowed", ("The method is not allowed on this path (type invalid_request_error, code 405); "
                              "`Allow` lists the methods.")),
    408: ("RequestTimeout", ("The request's headers or body did not arrive in time (AICREDITS_HEADER_TIMEOUT, "
                            "AICREDITS_BODY_TIMEOUT); type invalid_request_error, and the connection is closed.")),
    413: ("PayloadTooLarge", ("request_too_large: the body is larger than AICREDITS_MAX_BODY_BYTES, or holds more "
                             "than 100,000 JSON objects and arrays or 500,000 values (or the provider answered "
                             "413). Nothing is forwarded.")),
    415: ("UnsupportedMediaType", ("The body's Content-Type is not one this route reads (type "
                                  "invalid_request_error, code 415).")),
    429: ("TooManyRequests", ("rate_limit_error: this key's rpm/tpm limit or its cap on requests in flight, the "
                             "process's budget for bodies being received, or the provider's own rate limit. Retry "
                             "after Retry-After seconds.")),
    500: ("InternalError", "internal_error: an unexpected failure inside the gateway; logged with the request id."),
    502: ("BadGateway", ("upstream_error: the provider failed (5xx), refused the gateway's credentials, could not "
                        "be reached, or sent an unreadable answer. Nothing is charged.")),
    503: ("ServiceUnavailable", ("service_unavailable: the provider is overloaded, or this process has too many "
                                "open connections. Retry after Retry-After seconds.")),
    504: ("GatewayTimeout", "upstream_timeout: the provider did not answer in time. Nothing is charged."),
}
# every route can answer these: an unknown method, a slow client, a failure inside the gateway
ALWAYS = (405, 408, 500)
BILLABLE = (400, 401, 402, 403, 404, 413, 429, 502, 503, 504)
RATE_LIMIT = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
              "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
METERED = ("x-request-id", "x-aicredits-cost", "x-aicredits-balance", "x-aicredits-cache", "x-aicredits-overhead-ms",
           *RATE_LIMIT)
_GO_DURATION = r"^([0-9]+h)?([0-9]+m)?([0-9]+(\.[0-9]+)?s|[0-9]+ms)$"
HEADERS = {
    "x-request-id": ("XRequestId", {"type": "string", "pattern": REQUEST_ID_PATTERN},
                     ("The request id: the client's `x-request-id` when it matches `[A-Za-z0-9._:-]{1,128}`, else a "
                     "new one.")),
    "x-aicredits-cost": ("XAicreditsCost", {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$"},
                         ("INR charged for this call, 6 decimals. Not on streams (their usage chunk has "
                         "`usage.cost`).")),
    "x-aicredits-balance": ("XAicreditsBalance", {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$"},
                            ("Wallet balance after the charge, minus the holds still open, in INR. Not on streams, "
                             "and absent on a free cache hit (no money moved).")),
    "x-aicredits-cache": ("XAicreditsCache", {"type": "string", "enum": ["hit", "miss", "bypass"]},
                          ("`hit` (answered by the response cache), `miss` (looked up, not found) or `bypass` (not "
                           "looked up: the caches are off, the default, or `no_cache` was set, or the request is one "
                           "the cache never serves). See docs/caching.md.")),
    "x-aicredits-overhead-ms": ("XAicreditsOverheadMs", {"type": "string", "pattern": r"^[0-9]+\.[0-9]{3}$"},
                                "Milliseconds spent in the gateway itself, upstream time excluded."),
    "x-ratelimit-limit-requests": ("XRatelimitLimitRequests", {"type": "string", "pattern": "^[0-9]+$"},
                                   "The key's rpm (only for a key with one; docs/rate-limits.md)."),
    "x-ratelimit-remaining-requests": ("XRatelimitRemainingRequests", {"type": "string", "pattern": "^[0-9]+$"},
                                       "Requests the key may still make in the sliding window."),
    "x-ratelimit-reset-requests": ("XRatelimitResetRequests", {"type": "string", "pattern": _GO_DURATION},
                                   "Time until the request window is back to full, as `1s`, `6m0s`."),
    "x-ratelimit-limit-tokens": ("XRatelimitLimitTokens", {"type": "string", "pattern": "^[0-9]+$"},
                                 "The key's tpm (only for a key with one)."),
    "x-ratelimit-remaining-tokens": ("XRatelimitRemainingTokens", {"type": "string", "pattern": "^[0-9]+$"},
                                     "Tokens the key may still use in the sliding window."),
    "x-ratelimit-reset-tokens": ("XRatelimitResetTokens", {"type": "string", "pattern": _GO_DURATION},
                                 "Time until the token window is back to full."),
    "retry-after": ("RetryAfter", {"type": "string", "pattern": "^[0-9]+$"}, "Seconds to wait before retrying."),
    "allow": ("Allow", {"type": "string"}, "The methods this path accepts."),
    "location": ("Location", {"type": "string"}, "Where to go."),
}


@dataclass(frozen=True)
class Body:
    """One content type of a request or response body: a model, a raw schema, or none (any bytes)."""
    content_type: str = "application/json"
    model: type[BaseModel] | None = None
    schema: dict | None = None


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    operation_id: str
    tag: str
    summary: str
    description: str = ""
    request: tuple[Body, ...] = ()                 # the accepted bodies (none: no body)
    response: tuple[Body, ...] = ()                # the 200 answer's bodies
    response_headers: tuple[str, ...] = ()
    status: int = 200
    status_description: str = "OK."
    security: str | None = "bearer"                # "bearer", "session", "admin", or None (no authentication)
    errors: tuple[int, ...] = ()
    extra_responses: dict = field(default_factory=dict)   # status -> a ready OpenAPI response object
    parameters: tuple[dict, ...] = ()              # path and query parameters (OpenAPI objects)


SSE = Body("text/event-stream")   # `data: <JSON>` events: no schema (OpenAPI 3.1 cannot describe a stream of them)
AUDIO = tuple(Body(t) for t in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm"))

OPERATIONS: list[Operation] = [
    Operation("/v1/chat/completions", "post", "createChatCompletion", "chat", "Create a chat completion",
              "Reserves the call's worst-case cost, calls the provider, charges the actual cost and releases the "
              "rest. With `stream: true` the answer is server-sent events (`data: <chunk JSON>`, ending `data: "
              "[DONE]`); a stream cut by the provider ends with an event holding `error`.",
              request=(Body(model=s.ChatCompletionRequest),), response=(Body(model=s.ChatCompletion), SSE),
              response_headers=METERED, errors=BILLABLE),
    Operation("/v1/responses", "post", "createResponse", "chat", "Create a response (OpenAI Responses API)",
              "Native for OpenAI models, translated to chat for the others. With `stream: true`: server-sent "
              "events (`event:` + `data:`).",
              request=(Body(model=s.ResponsesRequest),), response=(Body(model=s.Response), SSE),
              response_headers=METERED, errors=BILLABLE),
    Operation("/v1/embeddings", "post", "createEmbeddings", "embeddings", "Create embeddings",
              request=(Body(model=s.EmbeddingsRequest),), response=(Body(model=s.EmbeddingList),),
              response_headers=METERED, errors=BILLABLE),
    Operation("/v1/images/generations", "post", "createImage", "images", "Generate images",
              request=(Body(model=s.ImagesRequest),), response=(Body(model=s.ImagesResponse),),
              response_headers=METERED, errors=BILLABLE),
    Operation("/v1/audio/speech", "post", "createSpeech", "audio", "Text to speech",
              "The audio's bytes, in the requested `response_format` (mp3 by default).",
              request=(Body(model=s.SpeechRequest),), response=AUDIO, response_headers=METERED, errors=BILLABLE),
    Operation("/v1/audio/transcriptions", "post", "createTranscription", "audio", "Speech to text",
              "multipart/form-data as the SDKs send it, or the reference's JSON with base64 `input_audio`. The "
              "answer follows `response_format`: JSON (`{\"text\"}`, or verbose) or plain text, SRT, VTT.",
              request=(Body("multipart/form-data", s.TranscriptionForm), Body(model=s.TranscriptionJson)),
              response=(Body(model=s.Transcription), Body("text/plain"), Body("application/x-subrip"),
                        Body("text/vtt")),
              response_headers=METERED, errors=(*BILLABLE, 415)),
    Operation("/v1/credits", "get", "getCredits", "account", "Wallet balance of the key's account",
              response=(Body(model=s.Credits),), response_headers=("x-request-id", "x-aicredits-cache"),
              errors=(401,)),
    Operation("/v1/models", "get", "listModels", "models", "Models this gateway serves (OpenAI list shape)",
              response=(Body(model=s.ModelList),), response_headers=("x-request-id", "x-aicredits-cache"),
              errors=(401,)),
    Operation("/v1/models/{model}", "get", "retrieveModel", "models", "One model this gateway serves (OpenAI shape)",
              "The id may hold slashes (`/v1/models/openai/gpt-4o-mini`); 404 for an id the gateway does not "
              "serve, or one outside the key's model allow-list.",
              response=(Body(model=s.ModelObject),), response_headers=("x-request-id", "x-aicredits-cache"),
              errors=(401, 404), parameters=({"name": "model", "in": "path", "required": True,
                                               "schema": {"type": "string"},
                                               "description": "A model id from GET /v1/models."},)),
    Operation("/api/models", "get", "getCatalog", "models", "The public model catalog with prices",
              response=(Body(model=s.Catalog),), security=None),
    Operation("/health", "get", "health", "health", "Liveness", response=(Body(model=s.Health),), security=None),
    Operation("/health/ready", "get", "ready", "health", "Readiness: database and Redis",
              "`redis` is `disabled` when AICREDITS_REDIS_URL is not set.",
              response=(Body(model=s.Readiness),), security=None,
              extra_responses={503: {"description": "A dependency does not answer; it is `unavailable`.",
                                     "headers": {"retry-after": {"$ref": "#/components/headers/RetryAfter"}},
                                     "content": {"application/json": {
                                         "schema": {"$ref": REF.format(model="Readiness")}}}}}),
    Operation("/metrics", "get", "metrics", "health", "Prometheus metrics",
              "The Prometheus text format (docs/operations.md, \"Metrics\"). When AICREDITS_METRICS_TOKEN is set, "
              "`Authorization: Bearer <that token>` is required (401 without it); it is not an API key.",
              response=(Body("text/plain"),), security=None, errors=(401,)),
    Operation("/openapi.json", "get", "openapi", "health", "This document",
              response=(Body(schema={"type": "object"}),), security=None),
    Operation("/webhooks/razorpay", "post", "razorpayWebhook", "payments", "Razorpay's webhooks",
              "Authenticated by `X-Razorpay-Signature` (HMAC of the raw body with the webhook secret). 200 for "
              "every event whose signature verifies, whatever it led to; 400 when it does not; 404 when "
              "Razorpay is not enabled.",
              request=(Body(schema={"type": "object"}),), response=(Body(model=s.WebhookAck),), security=None,
              errors=(400, 404, 413)),
    Operation("/", "get", "root", "dashboard", "Redirect to the dashboard", status=302,
              status_description="To /dashboard/.", response_headers=("location",), security=None),
    Operation("/dashboard/", "get", "dashboard", "dashboard", "The dashboard (server-rendered pages)",
              "Every page of the dashboard is under /dashboard/ (docs/dashboard.md): sign-in, keys, wallet, "
              "usage, admin pages. They authenticate with the `aic_session` cookie set at sign-in (and CSRF "
              "tokens in forms); without a session they redirect to the sign-in page.",
              response=(Body("text/html"),), security=None, errors=(404,),
              extra_responses={303: {"description": "To the sign-in page.",
                                     "headers": {"location": {"$ref": "#/components/headers/Location"}}}}),
]



# ------------------------------------------------------------------------------ /admin/api (api/admin_api.py)
def _param(name: str, where: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema,
            **({"description": description} if description else {})}


USER_ID = _param("user_id", "path", {"type": "integer", "minimum": 1})
KEY_ID = _param("key_id", "path", {"type": "string"})
DAYS = (_param("from", "query", {"type": "string", "format": "date"}, "First day, YYYY-MM-DD in `tz`."),
        _param("to", "query", {"type": "string", "format": "date"}, "Last day (default: today)."),
        _param("tz", "query", {"type": "string"}, "An IANA time zone (default: AICREDITS_TIMEZONE)."))
PAGE = (_param("before", "query", {"type": "string", "pattern": r"^\d{1,15}\.\d{1,10}$"},
               "The previous page's `next_before`."),
        _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200}, "Rows per page (default 50)."))
ADMIN_ERRORS = (400, 401, 404)


def _admin(path: str, method: str, op_id: str, summary: str, description: str = "", *,
           request: type[BaseModel] | None = None, response: type[BaseModel] | None = None, status: int = 200, parameters: tuple[dict, ...] = ()) -> Operation:
    return Operation(path, method, op_id, "admin", summary, description,
                     request=(Body(model=request),) if request else (), response=(Body(model=response),),
                     status=status, status_description="Created." if status == 201 else "OK.", security="admin",
                     errors=ADMIN_ERRORS, parameters=parameters)


OPERATIONS += [
    _admin("/admin/api/users", "get", "adminListUsers", "Users by id; search by part of the email or name",
           response=a.AdminUserList, parameters=(
               _param("q", "query", {"type": "string"}, "Part of the email or name, any case."),
               _param("after", "query", {"type": "integer", "minimum": 0}, "The previous page's `next_after`."),
               _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200}))),
    _admin("/admin/api/users", "post", "adminCreateUser", "Create a user (and grant it credits)",
           "Audited as `user.created` (and `credits.granted`).", request=a.AdminCreateUser, response=a.AdminUser,
           status=201),
    _admin("/admin/api/users/{user_id}", "get", "adminGetUser", "One user, with wallet and keys",
           response=a.AdminUser, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/disable", "post", "adminDisableUser", "Disable a user",
           "No sign-in, its sessions end, its keys are refused (at once here, within a second by every other "
           "process). Its ledger stays. An admin cannot disable their own account. Audited as `account.disabled`.",
           response=a.AdminUser, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/enable", "post", "adminEnableUser", "Enable a user again",
           "Audited as `account.enabled`.", response=a.AdminUser, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/credits", "post", "adminCredits", "Grant or debit credits, with a reason",
           "A `grant` entry adds; a `debit` entry takes, never more than the wallet has available (balance minus "
           "holds; 400 otherwise). Audited as `credits.granted` / `credits.debited`.",
           request=a.AdminCreditsRequest, response=a.AdminCredits, status=201, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/keys", "get", "adminListKeys", "A user's API keys (never their secrets)",
           response=a.AdminKeyList, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/keys", "post", "adminCreateKey", "Create an API key for a user, with limits",
           "`key` in the answer is the secret, shown this once. Audited as `key.created`.",
           request=a.AdminCreateKey, response=a.AdminKey, status=201, parameters=(USER_ID,)),
    _admin("/admin/api/users/{user_id}/ledger", "get", "adminLedger", "A user's ledger entries, newest first",
           response=a.AdminLedgerPage, parameters=(
               USER_ID, _param("kind", "query", {"type": "string"}, "One kind: grant, topup, refund, charge, ..."),
               *DAYS, *PAGE)),
    _admin("/admin/api/users/{user_id}/usage", "get", "adminUsage", "A user's calls (the request log), newest first",
           response=a.AdminCallPage, parameters=(
               USER_ID, _param("model", "query", {"type": "string"}),
               _param("key", "query", {"type": "string"}, "One of this user's key ids (another's: 404)."),
               _param("status", "query", {"type": "string", "enum": ["ok", "error"]}),
               _param("cache", "query", {"type": "string", "enum": ["hit", "miss", "bypass"]}), *DAYS, *PAGE)),
    _admin("/admin/api/users/{user_id}/usage/daily", "get", "adminUsageDaily",
           "A user's requests, tokens and spend per day and model",
           "The last 30 days by default, at most 400; days are calendar days in `tz`.",
           response=a.AdminUsageDays, parameters=(USER_ID, *DAYS)),
    _admin("/admin/api/keys/{key_id}", "patch", "adminUpdateKey", "Change a key's limits, expiry or models",
           "Fields left out stay; null removes a limit, the expiry or the model list. Running gateways apply it "
           "within a second. Audited as `key.limits`.", request=a.AdminUpdateKey, response=a.AdminKey, parameters=(KEY_ID,)),
    _admin("/admin/api/keys/{key_id}/revoke", "post", "adminRevokeKey", "Revoke a key",
           "Every running gateway refuses it within a second. Audited as `key.revoked`.", response=a.AdminKey,
           parameters=(KEY_ID,)),
    _admin("/admin/api/audit", "get", "adminAudit", "The audit log, newest first",
           "Every admin action and every sensitive user action (sign-in, key created or revoked, password "
           "changed, top-up): who, what, when, from which IP. Append-only.", response=a.AdminAuditPage, parameters=(
               _param("action", "query", {"type": "string"}, "One action, e.g. signin, key.created."),
               _param("actor_id", "query", {"type": "integer", "minimum": 1}, "The acting account's id."),
               _param("before", "query", {"type": "integer", "minimum": 1}, "The previous page's `next_before`."),
               _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}))),
]


def _content(bodies: tuple[Body, ...]) -> dict:
    out = {}
    for b in bodies:
        schema = {"$ref": REF.format(model=b.model.__name__)} if b.model else b.schema
        out[b.content_type] = {"schema": schema} if schema is not None else {}
    return out


def _operation(op: Operation) -> dict:
    doc: dict = {"operationId": op.operation_id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    doc["security"] = {"bearer": [{"bearerAuth": []}], "session": [{"sessionCookie": []}],
                       "admin": [{"adminKey": []}], None: []}[op.security]
    if op.security == "bearer":
        doc["parameters"] = [{"name": "x-request-id", "in": "header", "required": False,
                              "description": "Your own request id, echoed back when it matches "
                                             "`[A-Za-z0-9._:-]{1,128}`; any other value is replaced by a new id.",
                              "schema": {"type": "string"}}]
    if op.parameters:
        doc["parameters"] = [*doc.get("parameters", []), *op.parameters]
    if op.request:
        doc["requestBody"] = {"required": True, "content": _content(op.request)}
    ok: dict = {"description": op.status_description}
    if op.response_headers:
        ok["headers"] = {h: {"$ref": f"#/components/headers/{HEADERS[h][0]}"} for h in op.response_headers}
    if op.response:
        ok["content"] = _content(op.response)
    responses = {str(op.status): ok}
    for status in sorted({*op.errors, *ALWAYS}):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    responses.update({str(k): v for k, v in op.extra_responses.items()})
    doc["responses"] = dict(sorted(responses.items()))
    return doc


def _models(operations: list[Operation]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"Error": s.Error}
    for op in operations:
        for b in (*op.request, *op.response):
            if b.model is not None:
                seen[b.model.__name__] = b.model
    return list(seen.values())


def build(operations: list[Operation] | None = None) -> dict:
    """The OpenAPI 3.1 document of `operations` (default: OPERATIONS)."""
    operations = OPERATIONS if operations is None else operations
    models = _models(operations)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    paths: dict = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    error_ref = {"$ref": REF.format(model="Error")}
    responses = {}
    for status, (name, description) in ERRORS.items():
        headers = {"x-request-id": {"$ref": "#/components/headers/XRequestId"}}
        if status in (429, 503):
            headers["retry-after"] = {"$ref": "#/components/headers/RetryAfter"}
        if status == 405:
            headers["allow"] = {"$ref": "#/components/headers/Allow"}
        responses[name] = {"description": description, "headers": headers,
                           "content": {"application/json": {"schema": error_ref}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "aicredits", "version": __version__,
                 "summary": "OpenAI-compatible LLM gateway sold on prepaid INR credits.",
                 "description": "Errors always have the shape `{\"error\": {\"message\", \"type\", \"code\"}}` with "
                                "`code` equal to the HTTP status (docs/errors.md). Money is INR. Generated from "
                                "the gateway's code (api/openapi.py, api/schemas.py).",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "http://127.0.0.1:8000", "description": "`aicredits serve`"}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in operations)],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "sk-<64 lowercase hex>",
                               "description": "`Authorization: Bearer sk-…`, from `aicredits keys create` or the "
                                              "dashboard."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "aic_session",
                                  "description": "The dashboard's session, after signing in."},
                "adminKey": {"type": "http", "scheme": "bearer", "bearerFormat": "sk-admin-<64 lowercase hex>",
                             "description": "`Authorization: Bearer sk-admin-…`, from `aicredits admin-keys create` or "
                                            "the dashboard's Admin API keys page; it acts with the rights of its "
                                            "admin account. Refused on /v1, as inference keys are on /admin/api "
                                            "(401; docs/admin-api.md)."}},
            "schemas": defs.get("$defs", {}),
            "responses": responses,
            "headers": {name: {"description": description, "schema": schema}
                        for name, schema, description in HEADERS.values()},
        },
    }


@cache
def document() -> bytes:
    """The served document (built on first use, then kept)."""
    return orjson.dumps(build())
