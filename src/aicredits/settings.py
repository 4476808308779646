"""Settings: AICREDITS_* environment variables, provider variables named as their SDKs name
them, and an optional TOML file (AICREDITS_CONFIG). Built once, passed in; nothing else
reads the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicredits.domain.cache_rules import CachePolicy, load_policy
from aicredits.domain.money import to_fraction
from aicredits.domain.ratelimit import MAX_WINDOW_SECONDS

DEFAULT_DB_URL = "sqlite:///aicredits.db"


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    kind: str                      # openai | openai_compatible | anthropic | gemini | sarvam | demo
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    api_version: str | None = None            # Azure OpenAI's api-version
    connect_timeout: float | None = None      # None: the gateway-wide setting
    timeout: float | None = None              # time to the first byte
    stream_idle_timeout: float | None = None  # longest gap between stream chunks


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DB_URL
    redis_url: str | None = None
    redis_prefix: str = "aicredits:"     # every Redis key the gateway writes starts with this
    redis_timeout: float = 0.5           # seconds to connect to Redis or wait for an answer
    rate_window_seconds: float = 60.0    # the window of per-key rpm/tpm (60: per minute)
    usd_inr: Any = "88"
    markup: Any = "0"
    upstream_connect_timeout: float = 5.0
    upstream_timeout: float = 120.0
    stream_idle_timeout: float = 60.0
    max_request_seconds: float = 900.0
    max_body_bytes: int = 40 * 1024 * 1024
    retries: int = 2
    retry_base_delay: float = 0.2
    retry_max_delay: float = 2.0
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    key_cache_seconds: float = 1.0
    log_level: str = "INFO"
    access_log: bool = True
    config_path: str | None = None
    # the dashboard (docs/dashboard.md)
    signup: str = "open"                 # open | invite | closed
    timezone: str = "Asia/Kolkata"       # dates on the dashboard (a user may choose their own)
    public_url: str | None = None        # https://credits.example.com: links in mails, Secure cookies
    session_hours: float = 24 * 7        # a dashboard session expires this long after sign-in
    oidc_issuer: str | None = None       # OpenID Connect sign-in (any issuer with discovery)
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_name: str = "single sign-on"    # the button says "Sign in with <oidc_name>"
    smtp_host: str | None = None         # password-reset mails; without it, `users reset-link`
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_tls: str = "starttls"           # starttls | ssl | none
    trust_proxy: bool = False            # client IP from X-Forwarded-For (behind your own proxy only)
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    extra_models: tuple[dict, ...] = ()
    cache: CachePolicy = field(default_factory=CachePolicy)   # response caches (docs/caching.md)

    @property
    def usd_inr_fraction(self):
        return to_fraction(self.usd_inr)

    @property
    def markup_fraction(self):
        return to_fraction(self.markup)

    @property
    def hold_ttl_seconds(self) -> float:
        """A hold older than this belongs to no running call: the sweeper releases it."""
        return self.max_request_seconds + 60.0


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def _builtin_providers(env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    out = {
        "openai": ProviderSettings("openai", "openai",
                                   env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
                                   env.get("OPENAI_API_KEY") or None),
        "anthropic": ProviderSettings("anthropic", "anthropic",
                                      env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
                                      env.get("ANTHROPIC_API_KEY") or None),
        "gemini": ProviderSettings("gemini", "gemini",
                                   env.get("GEMINI_BASE_URL")
                                   or "https://generativelanguage.googleapis.com/v1beta/openai",
                                   env.get("GEMINI_API_KEY") or None),
        "sarvam": ProviderSettings("sarvam", "sarvam",
                                   env.get("SARVAM_BASE_URL") or "https://api.sarvam.ai",
                                   env.get("SARVAM_API_KEY") or None),
        "demo": ProviderSettings("demo", "demo", "builtin:demo", None),
    }
    return out


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    cfg: dict = {}
    config_path = env.get("AICREDITS_CONFIG") or None
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                cfg = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ValueError(f"AICREDITS_CONFIG points at a missing file: {config_path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"AICREDITS_CONFIG is not valid TOML: {exc}") from exc
    gw = cfg.get("gateway", {})

    def pick(name: str, key: str, default):
        return env.get(name) or gw.get(key, default)

    providers = _builtin_providers(env)
    for name, p in (cfg.get("providers") or {}).items():
        kind = p.get("kind", "openai_compatible")
        if kind not in {"openai", "openai_compatible", "azure", "anthropic", "gemini", "sarvam"}:
            raise ValueError(f"provider {name}: unknown kind {kind!r}")
        key_env = p.get("api_key_env")
        api_key = env.get(key_env) if key_env else p.get("api_key")
        base = providers.get(name)
        base_url = p.get("base_url") or (base.base_url if base else None)
        if not base_url:
            raise ValueError(f"provider {name}: base_url is required")
        def secs(key: str, p=p, name=name) -> float | None:
            v = p.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"provider {name}: {key} must be a positive number of seconds")
            return float(v)

        if kind == "azure" and not p.get("api_version"):
            raise ValueError(f"provider {name}: kind azure needs api_version")
        providers[name] = ProviderSettings(name, kind, base_url.rstrip("/"),
                                           api_key or (base.api_key if base else None),
                                           dict(p.get("headers") or {}), p.get("api_version"),
                                           secs("connect_timeout"), secs("timeout"), secs("stream_idle_timeout"))

    max_body = pick("AICREDITS_MAX_BODY_BYTES", "max_body_bytes", 40 * 1024 * 1024)
    try:
        max_body = int(max_body)
    except ValueError as exc:
        raise ValueError("AICREDITS_MAX_BODY_BYTES must be an integer") from exc

    db_url = pick("AICREDITS_DATABASE_URL", "database_url", DEFAULT_DB_URL)
    settings = Settings(
        database_url=db_url,
        redis_url=pick("AICREDITS_REDIS_URL", "redis_url", None),
        redis_prefix=str(pick("AICREDITS_REDIS_PREFIX", "redis_prefix", "aicredits:")),
        redis_timeout=_float(env, "AICREDITS_REDIS_TIMEOUT", float(gw.get("redis_timeout", 0.5))),
        rate_window_seconds=_float(env, "AICREDITS_RATE_WINDOW_SECONDS",
                                   float(gw.get("rate_window_seconds", 60))),
        usd_inr=str(pick("AICREDITS_USD_INR", "usd_inr", "88")),
        markup=str(pick("AICREDITS_MARKUP", "markup", "0")),
        upstream_connect_timeout=_float(env, "AICREDITS_UPSTREAM_CONNECT_TIMEOUT",
                                        float(gw.get("upstream_connect_timeout", 5))),
        upstream_timeout=_float(env, "AICREDITS_UPSTREAM_TIMEOUT", float(gw.get("upstream_timeout", 120))),
        stream_idle_timeout=_float(env, "AICREDITS_STREAM_IDLE_TIMEOUT",
                                   float(gw.get("stream_idle_timeout", 60))),
        max_request_seconds=_float(env, "AICREDITS_MAX_REQUEST_SECONDS",
                                   float(gw.get("max_request_seconds", 900))),
        max_body_bytes=max_body,
        retries=int(pick("AICREDITS_RETRIES", "retries", 2)),
        retry_base_delay=_float(env, "AICREDITS_RETRY_BASE_DELAY", float(gw.get("retry_base_delay", 0.2))),
        retry_max_delay=_float(env, "AICREDITS_RETRY_MAX_DELAY", float(gw.get("retry_max_delay", 2.0))),
        breaker_failures=int(pick("AICREDITS_BREAKER_FAILURES", "breaker_failures", 5)),
        breaker_cooldown=_float(env, "AICREDITS_BREAKER_COOLDOWN", float(gw.get("breaker_cooldown", 30))),
        log_level=str(pick("AICREDITS_LOG_LEVEL", "log_level", "INFO")).upper(),
        access_log=str(pick("AICREDITS_ACCESS_LOG", "access_log", "true")).lower() not in {"0", "false", "no"},
        config_path=config_path,
        signup=str(pick("AICREDITS_SIGNUP", "signup", "open")).lower(),
        timezone=str(pick("AICREDITS_TIMEZONE", "timezone", "Asia/Kolkata")),
        public_url=(pick("AICREDITS_PUBLIC_URL", "public_url", None) or None),
        session_hours=_float(env, "AICREDITS_SESSION_HOURS", float(gw.get("session_hours", 24 * 7))),
        oidc_issuer=pick("AICREDITS_OIDC_ISSUER", "oidc_issuer", None) or None,
        oidc_client_id=pick("AICREDITS_OIDC_CLIENT_ID", "oidc_client_id", None) or None,
        oidc_client_secret=pick("AICREDITS_OIDC_CLIENT_SECRET", "oidc_client_secret", None) or None,
        oidc_name=str(pick("AICREDITS_OIDC_NAME", "oidc_name", "single sign-on")),
        smtp_host=pick("AICREDITS_SMTP_HOST", "smtp_host", None) or None,
        smtp_port=int(pick("AICREDITS_SMTP_PORT", "smtp_port", 587)),
        smtp_user=pick("AICREDITS_SMTP_USER", "smtp_user", None) or None,
        smtp_password=pick("AICREDITS_SMTP_PASSWORD", "smtp_password", None) or None,
        smtp_from=pick("AICREDITS_SMTP_FROM", "smtp_from", None) or None,
        smtp_tls=str(pick("AICREDITS_SMTP_TLS", "smtp_tls", "starttls")).lower(),
        trust_proxy=str(pick("AICREDITS_TRUST_PROXY", "trust_proxy", "false")).lower() in {"1", "true", "yes"},
        providers=providers,
        extra_models=tuple(cfg.get("models") or ()),
        cache=load_policy(env, cfg.get("cache") or {}),
    )
    if settings.rate_window_seconds > MAX_WINDOW_SECONDS:
        raise ValueError(f"AICREDITS_RATE_WINDOW_SECONDS must be at most {MAX_WINDOW_SECONDS}")
    if settings.retries < 0 or settings.breaker_failures < 1:
        raise ValueError("AICREDITS_RETRIES must be >= 0 and AICREDITS_BREAKER_FAILURES >= 1")
    _check_dashboard(settings)
    # validate the money settings now, not on the first call
    if settings.usd_inr_fraction <= 0:
        raise ValueError("AICREDITS_USD_INR must be positive")
    if settings.markup_fraction < 0:
        raise ValueError("AICREDITS_MARKUP must not be negative")
    return settings


def _check_dashboard(s: Settings) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if s.signup not in {"open", "invite", "closed"}:
        raise ValueError(f"AICREDITS_SIGNUP must be open, invite or closed, got {s.signup!r}")
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"AICREDITS_TIMEZONE is not a time zone name: {s.timezone!r}") from exc
    if s.public_url and not s.public_url.startswith(("http://", "https://")):
        raise ValueError("AICREDITS_PUBLIC_URL must start with http:// or https://")
    oidc = (s.oidc_issuer, s.oidc_client_id, s.oidc_client_secret)
    if any(oidc) and not all(oidc):
        raise ValueError("OpenID Connect needs AICREDITS_OIDC_ISSUER, AICREDITS_OIDC_CLIENT_ID and "
                         "AICREDITS_OIDC_CLIENT_SECRET together")
    if s.smtp_tls not in {"starttls", "ssl", "none"}:
        raise ValueError("AICREDITS_SMTP_TLS must be starttls, ssl or none")
    if s.smtp_host and not s.smtp_from:
        raise ValueError("AICREDITS_SMTP_HOST needs AICREDITS_SMTP_FROM (the sender address)")


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (relative to the working directory), or None."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None
