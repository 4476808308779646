"""Settings: one typed schema (pydantic models, extra="forbid") for the AICREDITS_*
environment variables, the provider variables named as their SDKs name them, and the TOML
file at AICREDITS_CONFIG. Built once at start and passed in; nothing else reads the
environment. docs/configuration.md is the reference.

A bad setting stops the start with one SettingsError line naming the variable, or the file
and its key. pydantic-settings' BaseSettings is not used: it reads os.environ on its own,
ignores unknown AICREDITS_* variables (we refuse them) and cannot say which source a bad
value came from; here the environment is one Mapping, read once, and every error names its
source.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from aicredits.domain.cache_rules import CACHE_ENV, CachePolicy, load_policy
from aicredits.domain.catalog import ENDPOINTS
from aicredits.domain.money import to_fraction
from aicredits.domain.payments import TopupTerms, parse_inr, percent
from aicredits.domain.ratelimit import MAX_WINDOW_SECONDS

DEFAULT_DB_URL = "sqlite:///aicredits.db"   # only for a Settings built by hand; load_settings() uses default_database_url
DEFAULT_DB_FILE = "aicredits.db"             # in the state directory, when no database URL is set
ENV_PREFIX = "AICREDITS_"
CONFIG_ENV = "AICREDITS_CONFIG"
# AICREDITS_* names read by the test suite (tests/conftest.py) and bench/run.py, not by the gateway
TOOL_ENV = frozenset({"AICREDITS_TEST_PG", "AICREDITS_TEST_REDIS", "AICREDITS_TEST_CHROMIUM", "AICREDITS_BIN"})
SECRET_KEYS = frozenset({"api_key", "headers", "database_url", "redis_url", "razorpay_key_secret",
                         "razorpay_webhook_secret", "metrics_token", "otel_headers"})   # never echoed in an error
PAYMENT_PROVIDERS = ("razorpay", "test")


class SettingsError(ValueError):
    """A bad setting: one line naming the variable, or the file and the key."""


# ------------------------------------------------------------------------------- value types
def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")   # noqa: TRY004 - pydantic wants ValueError
    return value


def _decimal(minimum: Literal["positive", "non-negative"]):
    def check(value: Any) -> str:
        _not_bool(value)
        try:
            frac = to_fraction(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("must be a decimal number") from exc
        if frac < 0 or (minimum == "positive" and frac == 0):
            raise ValueError(f"must be {minimum}")
        return repr(value) if isinstance(value, float) else str(value)
    return BeforeValidator(check)


def _price(value: Any) -> Any:
    _not_bool(value)
    try:
        frac = to_fraction(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a price (a number)") from exc
    if frac < 0:
        raise ValueError("must not be negative")
    return value


def _zone(value: Any) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError("must be a time zone name such as Asia/Kolkata") from exc
    return value


def _url(value: Any) -> Any:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _redis_url(value: Any) -> Any:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    from urllib.parse import urlsplit
    try:
        urlsplit(value).port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return value


def _otlp_headers(value: Any) -> Any:
    """'name=value,name2=value2' (the OTLP exporters' header list)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not all("=" in p and p.split("=", 1)[0].strip() for p in value.split(",")):
        raise ValueError("must be name=value pairs separated by commas")
    return value


def _names(value: Any) -> Any:
    """'razorpay, test' or ["razorpay", "test"] -> ("razorpay", "test") (lower case, no repeats)."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError("must be names separated by commas")
    names = tuple(dict.fromkeys(x.strip().lower() for x in items if x.strip()))
    unknown = [n for n in names if n not in PAYMENT_PROVIDERS]
    if unknown:
        raise ValueError(f"unknown payment provider {unknown[0]!r} (known: {', '.join(PAYMENT_PROVIDERS)})")
    return names


def _inr(value: Any) -> str:
    _not_bool(value)
    parse_inr(value)             # TopupRefused (a ValueError) names what is wrong
    return str(value).strip()


def _inr_list(value: Any) -> Any:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be amounts separated by commas")  # noqa: TRY004 - pydantic wants ValueError
    return tuple(_inr(x) for x in items if str(x).strip())


def _percent(value: Any) -> str:
    _not_bool(value)
    percent(value)               # 0..100
    return str(value).strip()


Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
Price = Annotated[int | float | str, BeforeValidator(_price)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]
Currency = Annotated[Literal["USD", "INR"], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------- the settings
class GatewaySettings(_Strict):
    """Every scalar setting: AICREDITS_<NAME> in the environment, or <name> in the TOML file's
    [gateway] table (a set, non-empty variable wins)."""
    database_url: str = DEFAULT_DB_URL
    redis_url: Annotated[str | None, BeforeValidator(_redis_url)] = None
    redis_prefix: str = "aicredits:"             # every Redis key the gateway writes starts with this
    redis_timeout: Seconds = 0.5                 # seconds to connect to Redis or wait for an answer
    rate_window_seconds: Annotated[Seconds, Field(le=MAX_WINDOW_SECONDS)] = 60.0   # per-key rpm/tpm window
    usd_inr: Annotated[str, _decimal("positive")] = "88"
    markup: Annotated[str, _decimal("non-negative")] = "0"
    upstream_connect_timeout: Seconds = 5.0
    upstream_timeout: Seconds = 120.0
    stream_idle_timeout: Seconds = 60.0
    max_request_seconds: Seconds = 900.0         # the longest call, on every endpoint (a timer)
    hold_lease_seconds: Seconds = 30.0           # a hold's lease; its process renews it every lease / 6
    settle_retry_seconds: Seconds = 15.0         # a failed settle is retried this long, then journaled
    state_dir: str | None = None                 # the settle journal's home (None: see journal_dir)
    db_timeout: Seconds = 5.0                    # PostgreSQL: the longest one operation waits (then 503)
    ready_timeout: Seconds = 2.0                 # /health/ready answers within this
    drain_seconds: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)] = 25.0
    max_body_bytes: Count = 40 * 1024 * 1024
    # hostile clients (docs/operations.md, "Hostile clients"): what one process lets bodies,
    # keys and connections take
    body_bytes_in_flight: Count = 256 * 1024 * 1024   # bodies being received and parsed at once
    key_max_concurrent: Count | None = None          # requests in flight per API key (None: no cap)
    header_timeout: Seconds = 10.0                   # a request's line and headers, from its first byte
    body_timeout: Seconds = 60.0                     # a request's whole body, from its headers' end
    max_connections: Count = 1000                    # open client connections per process
    retries: Annotated[int, BeforeValidator(_not_bool), Field(ge=0)] = 2
    retry_base_delay: Seconds = 0.2
    retry_max_delay: Seconds = 2.0
    breaker_failures: Count = 5
    breaker_cooldown: Seconds = 30.0
    log_level: LogLevel = "INFO"
    log_format: Annotated[Literal["auto", "json", "text"],
                          BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "auto"
    access_log: bool = True
    # the dashboard (docs/dashboard.md)
    signup: Annotated[Literal["open", "invite", "closed"],
                      BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "open"
    timezone: Annotated[str, BeforeValidator(_zone)] = "Asia/Kolkata"   # dates on the dashboard
    public_url: Annotated[str | None, BeforeValidator(_url)] = None      # links in mails, Secure cookies
    session_hours: Seconds = 24 * 7          # a dashboard session expires this long after sign-in
    oidc_issuer: str | None = None           # OpenID Connect sign-in (any issuer with discovery)
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(default=None, repr=False)
    oidc_name: str = "single sign-on"        # the button says "Sign in with <oidc_name>"
    smtp_host: str | None = None             # password-reset mails; without it, `users reset-link`
    smtp_port: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65535)] = 587
    smtp_user: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_tls: Annotated[Literal["starttls", "ssl", "none"],
                        BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "starttls"
    trust_proxy: bool = False                # client IP from X-Forwarded-For (behind your own proxy only)
    # observability settings, described in docs/operations.md
    metrics_token: str | None = Field(default=None, repr=False)   # GET /metrics needs it as a bearer token
    otel_endpoint: Annotated[str | None, BeforeValidator(_url)] = None   # OTLP/HTTP collector; traces off without
    otel_headers: Annotated[str | None, BeforeValidator(_otlp_headers), Field(repr=False)] = None
    otel_service_name: str = "aicredits"
    otel_sample_ratio: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    otel_propagate_upstream: bool = False    # send the attempt's traceparent to providers
    # top-ups (docs/payments.md); amounts in rupees, percentages of 100
    payment_providers: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = None  # default: razorpay if keyed
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = Field(default=None, repr=False)
    razorpay_webhook_secret: str | None = Field(default=None, repr=False)
    razorpay_base_url: Annotated[str, BeforeValidator(_url)] = "https://api.razorpay.com"
    razorpay_checkout_url: Annotated[str, BeforeValidator(_url)] = "https://checkout.razorpay.com/v1/checkout.js"
    topup_min_inr: Annotated[str, BeforeValidator(_inr)] = "100"
    topup_max_inr: Annotated[str, BeforeValidator(_inr)] = "100000"
    topup_presets: Annotated[tuple[str, ...], BeforeValidator(_inr_list)] = ("500", "1000", "2000", "5000")
    topup_fee_percent: Annotated[str, BeforeValidator(_percent)] = "0"    # of the credits, paid on top
    topup_gst_percent: Annotated[str, BeforeValidator(_percent)] = "0"    # of credits + fee, paid on top
    business_name: str = "aicredits"         # the seller on receipts and in Razorpay Checkout
    gstin: str | None = None                 # printed on receipts when set

    @property
    def payments(self) -> PaymentSettings:
        providers = self.payment_providers
        if providers is None:
            providers = ("razorpay",) if self.razorpay_key_id else ()
        return PaymentSettings(
            providers, self.razorpay_key_id, self.razorpay_key_secret, self.razorpay_webhook_secret,
            self.razorpay_base_url.rstrip("/"), self.razorpay_checkout_url, self.topup_min_inr, self.topup_max_inr,
            self.topup_presets, self.topup_fee_percent, self.topup_gst_percent, self.business_name, self.gstin)

    @model_validator(mode="after")
    def _payments(self):
        p = self.payments
        if "razorpay" in p.providers and not (p.razorpay_key_id and p.razorpay_key_secret
                                              and p.razorpay_webhook_secret):
            raise ValueError("the razorpay payment provider needs AICREDITS_RAZORPAY_KEY_ID, "
                             "AICREDITS_RAZORPAY_KEY_SECRET and AICREDITS_RAZORPAY_WEBHOOK_SECRET")
        try:
            p.terms  # noqa: B018 - min <= max, presets within them: checked now, not on the first top-up
        except ValueError as exc:
            raise ValueError(f"top-up settings (AICREDITS_TOPUP_*): {exc}") from None
        return self

    @model_validator(mode="after")
    def _body_budget(self):
        if self.body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(f"AICREDITS_BODY_BYTES_IN_FLIGHT ({self.body_bytes_in_flight}) must be at least "
                             f"AICREDITS_MAX_BODY_BYTES ({self.max_body_bytes}), or the largest body is never "
                             "accepted")
        return self

    @model_validator(mode="after")
    def _dashboard_pairs(self):
        oidc = (self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret)
        if any(oidc) and not all(oidc):
            raise ValueError("OpenID Connect needs AICREDITS_OIDC_ISSUER, AICREDITS_OIDC_CLIENT_ID and "
                             "AICREDITS_OIDC_CLIENT_SECRET together")
        if self.smtp_host and not self.smtp_from:
            raise ValueError("AICREDITS_SMTP_HOST needs AICREDITS_SMTP_FROM (the sender address)")
        return self


@dataclass(frozen=True)
class PaymentSettings:
    """The top-up settings as the payment providers and the wallet pages use them (built from
    GatewaySettings.payments; docs/payments.md)."""

    providers: tuple[str, ...] = ()            # enabled, in the wallet page's order
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = field(default=None, repr=False)
    razorpay_webhook_secret: str | None = field(default=None, repr=False)
    razorpay_base_url: str = "https://api.razorpay.com"
    razorpay_checkout_url: str = "https://checkout.razorpay.com/v1/checkout.js"
    min_inr: str = "100"
    max_inr: str = "100000"
    presets: tuple[str, ...] = ("500", "1000", "2000", "5000")
    fee_percent: str = "0"
    gst_percent: str = "0"
    business_name: str = "aicredits"
    gstin: str | None = None

    @property
    def terms(self) -> TopupTerms:
        return TopupTerms(parse_inr(self.min_inr), parse_inr(self.max_inr),
                          tuple(parse_inr(p) for p in self.presets),
                          percent(self.fee_percent), percent(self.gst_percent))


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    kind: str                      # a kind registered in providers/registry.py (openai, anthropic, ...)
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    api_version: str | None = None            # Azure OpenAI's api-version
    connect_timeout: float | None = None      # None: the gateway-wide setting
    timeout: float | None = None              # time to the first byte
    stream_idle_timeout: float | None = None  # longest gap between stream chunks


class Settings(GatewaySettings):
    config_path: str | None = None                              # AICREDITS_CONFIG
    database_from: str = "default"     # where database_url came from, for messages (see load_settings)
    providers: Mapping[str, ProviderSettings] = Field(default_factory=dict)
    extra_models: tuple[dict, ...] = ()                         # the file's [[models]], as written
    cache: Annotated[Any, Field(default_factory=CachePolicy)]   # response caches: AICREDITS_CACHE_*, [cache]
    key_cache_seconds: ClassVar[float] = 1.0   # a revoked key is refused within this (not a setting)

    @property
    def usd_inr_fraction(self):
        return to_fraction(self.usd_inr)

    @property
    def markup_fraction(self):
        return to_fraction(self.markup)

    @property
    def hold_ttl_seconds(self) -> float:
        """The longest a hold outlives the process that made it: its lease, plus the sweeper's
        interval (lease / 6). A running process renews its holds, however long their calls run."""
        return self.hold_lease_seconds * 7 / 6

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database's file (absolute), or None for PostgreSQL and :memory:."""
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if self.database_url.startswith(prefix):
                db = self.database_url[len(prefix):].split("?", 1)[0]
                return Path(db).absolute() if db and db != ":memory:" else None
        return None

    @property
    def journal_dir(self) -> Path:
        """The settle journal's directory: <state_dir>/settle-journal. Without AICREDITS_STATE_DIR,
        the state directory is the SQLite database's directory, or the working directory for
        PostgreSQL."""
        if self.state_dir:
            return Path(self.state_dir) / "settle-journal"
        base = Path(".")
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if self.database_url.startswith(prefix):
                db = self.database_url[len(prefix):].split("?", 1)[0]
                if db and db != ":memory:":
                    base = Path(db).parent
        return base / "settle-journal"


SCALARS = tuple(GatewaySettings.model_fields)
ENV_NAMES = {ENV_PREFIX + name.upper(): name for name in SCALARS}


# ------------------------------------------------------------------------------- the TOML file
class ProviderTable(_Strict):
    """[providers.NAME]"""
    kind: str | None = None   # a registered kind (providers/registry.py); default: a built-in name's own kind, else openai_compatible
    base_url: str | None = None
    api_key_env: str | None = None                 # the variable holding the key
    api_key: str | None = Field(default=None, repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    api_version: str | None = None
    connect_timeout: Seconds | None = None
    timeout: Seconds | None = None
    stream_idle_timeout: Seconds | None = None


class TierRow(_Strict):
    above_prompt_tokens: Count
    input_cost_per_1m: Price | None = None
    output_cost_per_1m: Price | None = None
    cache_read_cost_per_1m: Price | None = None
    cache_write_cost_per_1m: Price | None = None
    cache_write_1h_cost_per_1m: Price | None = None


class DeploymentRow(_Strict):
    provider: str
    upstream_id: str | None = None
    weight: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)] = 1.0


class ModelRow(_Strict):
    """[[models]]: the fields of catalog/models.toml (domain/catalog.py ENTRY_KEYS; a test keeps
    the two the same)."""
    id: str
    name: str | None = None
    provider: str | None = None
    upstream_id: str | None = None
    endpoint: Literal[ENDPOINTS] | None = None
    currency: Currency | None = None
    context_window: Count | None = None
    max_output_tokens: Count | None = None
    modalities: list[str] | None = None
    input_cost_per_1m: Price | None = None
    output_cost_per_1m: Price | None = None
    cache_read_cost_per_1m: Price | None = None
    cache_write_cost_per_1m: Price | None = None
    cache_write_1h_cost_per_1m: Price | None = None
    cost_per_1m_chars: Price | None = None
    cost_per_minute: Price | None = None
    cost_per_image: dict[str, dict[str, Price]] | None = None
    tiers: list[TierRow] | None = None
    fallbacks: list[str] | None = None
    deployments: list[DeploymentRow] | None = None


class ConfigFile(_Strict):
    gateway: dict[str, Any] = Field(default_factory=dict)     # checked as GatewaySettings
    providers: dict[str, ProviderTable] = Field(default_factory=dict)
    models: list[ModelRow] = Field(default_factory=list)
    cache: dict[str, Any] = Field(default_factory=dict)       # checked by domain/cache_rules.load_policy


# ------------------------------------------------------------------------------- loading
def _builtin_providers(env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    def var(name: str) -> str | None:
        return env.get(name) or None
    return {
        "openai": ProviderSettings("openai", "openai", var("OPENAI_BASE_URL") or "https://api.openai.com/v1",
                                   var("OPENAI_API_KEY")),
        "anthropic": ProviderSettings("anthropic", "anthropic",
                                      var("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
                                      var("ANTHROPIC_API_KEY")),
        "gemini": ProviderSettings("gemini", "gemini",
                                   var("GEMINI_BASE_URL") or "https://generativelanguage.googleapis.com/v1beta/openai",
                                   var("GEMINI_API_KEY")),
        "sarvam": ProviderSettings("sarvam", "sarvam", var("SARVAM_BASE_URL") or "https://api.sarvam.ai",
                                   var("SARVAM_API_KEY")),
        "demo": ProviderSettings("demo", "demo", "builtin:demo", None),
    }


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.7)
    if not close:
        return ""
    return f" (did you mean {next(k for k in known if k.lower() == close[0])}?)"


def _message(err: dict, key: str, known=()) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key" + _suggest(key, known)
    if err["type"] == "missing":
        return "is required"
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if not SECRET_KEYS.intersection(err["loc"]) and isinstance(err.get("input"), (str, int, float)):
        msg += f", got {err['input']!r}"
    return msg


def _toml_where(loc: tuple, doc: dict) -> tuple[str, str, tuple]:
    """('[[models]] #2 (id "x/y")', 'tiers[0].input_cost_per_1m', known keys there) for a pydantic loc."""
    head, rest = loc[0], list(loc[1:])
    known: tuple = ()
    if head == "models" and rest and isinstance(rest[0], int):
        rows = doc.get("models") or []
        row = rows[rest[0]] if rest[0] < len(rows) else None
        ident = row.get("id") if isinstance(row, dict) else None
        where = f"[[models]] #{rest[0] + 1}" + (f' (id "{ident}")' if isinstance(ident, str) else "")
        rest = rest[1:]
        known = tuple(TierRow.model_fields) if rest[:1] == ["tiers"] else tuple(ModelRow.model_fields)
        if rest[:1] == ["deployments"]:
            known = tuple(DeploymentRow.model_fields)
    elif head == "providers" and rest:
        where, rest, known = f"[providers.{rest[0]}]", rest[1:], tuple(ProviderTable.model_fields)
    else:
        where, rest, known = "", [head, *rest], tuple(ConfigFile.model_fields)
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest).lstrip(".")
    return where, key, known


def _read_file(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{CONFIG_ENV}={path}: no such file") from None
    except IsADirectoryError:
        raise SettingsError(f"{CONFIG_ENV}={path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise SettingsError(f"{CONFIG_ENV}={path}: permission denied") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _check_env_names(env: Mapping[str, str]) -> None:
    unknown = sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in ENV_NAMES
                     and n != CONFIG_ENV and n not in TOOL_ENV and n not in CACHE_ENV)
    if unknown:
        known = [*ENV_NAMES, CONFIG_ENV, *CACHE_ENV]
        raise SettingsError("; ".join(f"{n} (environment variable): unknown setting{_suggest(n, known)}"
                                      for n in unknown) + "; docs/configuration.md lists the settings")


def _gateway(env: Mapping[str, str], table: Any, path: str | None) -> tuple[GatewaySettings | None, list[str]]:
    from_env = {name: env[var] for var, name in ENV_NAMES.items() if env.get(var)}
    try:
        return GatewaySettings.model_validate({**(table if isinstance(table, dict) else {}), **from_env}), []
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            key = str(err["loc"][0]) if err["loc"] else ""
            if not key:   # a rule across settings (model_validator): its message names them
                lines.append(err["msg"].removeprefix("Value error, "))
            elif key in from_env:
                lines.append(f"{ENV_PREFIX}{key.upper()} (environment variable): {_message(err, key)}")
            else:
                lines.append(f"{path}: [gateway] {key}: {_message(err, key, SCALARS)}")
        return None, lines


def _file_errors(exc: ValidationError, doc: dict, path: str | None) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where, key, known = _toml_where(err["loc"], doc)
        leaf = next((p for p in reversed(err["loc"]) if isinstance(p, str)), key)
        lines.append(f"{path}: {' '.join(filter(None, (where, key)))}: {_message(err, leaf, known)}")
    return lines


def _providers(env: Mapping[str, str], tables: Mapping[str, ProviderTable], path: str | None):
    providers = _builtin_providers(env)
    for name, p in tables.items():
        base = providers.get(name)
        kind = p.kind or (base.kind if base else "openai_compatible")
        base_url = p.base_url or (base.base_url if base else None)
        if not base_url:
            raise SettingsError(f"{path}: [providers.{name}] base_url: is required")
        api_key = (env.get(p.api_key_env) or None) if p.api_key_env else p.api_key
        providers[name] = ProviderSettings(name, kind, base_url.rstrip("/"),
                                           api_key or (base.api_key if base else None), dict(p.headers),
                                           p.api_version, p.connect_timeout, p.timeout, p.stream_idle_timeout)
    return providers


def _check_kinds(providers: Mapping[str, ProviderSettings], path: str | None) -> None:
    """Each provider's kind is registered (providers/registry.py) and its table suits that kind."""
    from aicredits.providers.registry import config_problem
    problems = [f"{path}: [providers.{name}]{'' if msg.startswith('kind:') else ':'} {msg}"
                for name, p in providers.items() if (msg := config_problem(p))]
    if problems:
        raise SettingsError("; ".join(problems))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (os.environ unless given) and the TOML file once; raise
    SettingsError, one line naming every bad variable or file key."""
    env = os.environ if env is None else env
    _check_env_names(env)
    path = env.get(CONFIG_ENV) or None
    doc = _read_file(path) if path else {}
    errors: list[str] = []
    try:
        cfg = ConfigFile.model_validate(doc)
    except ValidationError as exc:
        cfg = None
        errors += _file_errors(exc, doc, path)
    gateway, gateway_errors = _gateway(env, doc.get("gateway", {}), path)
    errors += gateway_errors
    if cfg is None or gateway is None:
        raise SettingsError("; ".join(errors))
    extra_models = tuple(row.model_dump(exclude_none=True) for row in cfg.models)
    _check_catalog(extra_models, path)
    try:
        cache = load_policy(env, cfg.cache)
    except ValueError as exc:
        raise SettingsError(f"{exc} (docs/caching.md)") from None
    providers = _providers(env, cfg.providers, path)
    _check_kinds(providers, path)
    values = gateway.model_dump()
    if env.get("AICREDITS_DATABASE_URL"):
        database_from = "AICREDITS_DATABASE_URL"
    elif isinstance(doc.get("gateway"), dict) and doc["gateway"].get("database_url"):
        database_from = f"{path} [gateway] database_url"
    else:
        database_from = "default"
        values["database_url"] = default_database_url(env, gateway.state_dir)
    return Settings(**values, config_path=path, database_from=database_from, providers=providers,
                    extra_models=extra_models, cache=cache)


def state_home(env: Mapping[str, str], state_dir: str | None = None) -> Path:
    """The state directory: AICREDITS_STATE_DIR (or [gateway] state_dir) when set, else
    $XDG_DATA_HOME/aicredits, else ~/.local/share/aicredits. The same for the server and the CLI
    whatever their working directory, so both find the default database there."""
    if state_dir:
        return Path(state_dir).expanduser().absolute()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser().absolute() / "aicredits"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "aicredits"


def default_database_url(env: Mapping[str, str], state_dir: str | None = None) -> str:
    """The database when none is set: aicredits.db in the state directory (state_home)."""
    return f"sqlite:///{state_home(env, state_dir) / DEFAULT_DB_FILE}"


def _check_catalog(extra_models: tuple[dict, ...], path: str | None) -> None:
    """Build the catalog once now, so a bad [[models]] row stops the start, not a call."""
    from aicredits.catalog import load_catalog
    try:
        load_catalog(extra_models)
    except ValueError as exc:
        raise SettingsError(f"{path}: [[models]]: {exc}" if extra_models else f"built-in catalog: {exc}") from None
