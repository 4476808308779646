"""The providers' settings: the built-in providers from the variables their SDKs read
(OPENAI_API_KEY, ...), and the file's [providers.NAME] tables over them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import Field

from aicredits.settings.types import Seconds, SettingsError, Strict


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


class ProviderTable(Strict):
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


def builtin_providers(env: Mapping[str, str]) -> dict[str, ProviderSettings]:
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


def providers_of(env: Mapping[str, str], tables: Mapping[str, ProviderTable],
                 path: str | None) -> dict[str, ProviderSettings]:
    """The built-in providers with the file's tables over them (a table may add a provider)."""
    providers = builtin_providers(env)
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


def check_kinds(providers: Mapping[str, ProviderSettings], path: str | None) -> None:
    """Each provider's kind is registered (providers/registry.py) and its table suits that kind."""
    from aicredits.providers.registry import config_problem
    problems = [f"{path}: [providers.{name}]{'' if msg.startswith('kind:') else ':'} {msg}"
                for name, p in providers.items() if (msg := config_problem(p))]
    if problems:
        raise SettingsError("; ".join(problems))
