"""Provider kind -> adapter factory, and provider name -> adapter, built from settings.

A kind registers itself with `register_kind` (the built-in ones below); `load_settings` rejects a
`kind` nobody registered, and `build_providers` refuses to start when a catalog model's endpoint
is not served by its provider's adapter (providers/base.py CAPABILITIES)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aicredits.providers.base import Adapter, serves
from aicredits.settings import ProviderSettings, Settings, SettingsError

if TYPE_CHECKING:
    import aiohttp

# (its settings, the shared HTTP session, connect_timeout=, first_byte_timeout=, idle_timeout=)
Factory = Callable[..., Adapter]


@dataclass(frozen=True)
class ProviderKind:
    build: Factory
    needs_key: bool = True                                    # without a key its models are not served
    check: Callable[[ProviderSettings], str | None] | None = None   # a configuration problem, or None


KINDS: dict[str, ProviderKind] = {}


def register_kind(name: str, build: Factory, *, needs_key: bool = True,
                  check: Callable[[ProviderSettings], str | None] | None = None) -> None:
    """Make `kind = "<name>"` valid in [providers.X]; `build` makes its adapter."""
    KINDS[name] = ProviderKind(build, needs_key, check)


def config_problem(p: ProviderSettings) -> str | None:
    """What is wrong with a provider's configuration as its kind sees it, or None."""
    spec = KINDS.get(p.kind)
    if spec is None:
        return f"kind: unknown provider kind {p.kind!r} (known: {', '.join(sorted(KINDS))})"
    return spec.check(p) if spec.check else None


def _azure_check(p: ProviderSettings) -> str | None:
    return None if p.api_version else "kind azure needs api_version"


def _adapter(module: str, name: str) -> Factory:
    """A built-in adapter class, imported when the first adapter is built: checking settings (every
    CLI command does) loads no HTTP client or adapter code."""
    def build(*args: Any, **kwargs: Any) -> Adapter:   # noqa: ANN401 - the adapter's own arguments
        return getattr(importlib.import_module(f"aicredits.providers.{module}"), name)(*args, **kwargs)
    return build


def _demo(p: ProviderSettings, session: aiohttp.ClientSession, **timeouts: float) -> Adapter:
    from aicredits.providers.demo import DemoProvider
    return DemoProvider()


for _kind in ("openai", "openai_compatible", "gemini"):
    register_kind(_kind, _adapter("openai_compat", "OpenAICompatible"), needs_key=_kind != "openai_compatible")
register_kind("azure", _adapter("openai_compat", "OpenAICompatible"), check=_azure_check)
register_kind("anthropic", _adapter("anthropic", "AnthropicProvider"))
register_kind("sarvam", _adapter("sarvam", "SarvamProvider"))
register_kind("demo", _demo, needs_key=False)


def _timeouts(settings: Settings, p: ProviderSettings) -> dict:
    """The provider's own timeouts, falling back to the gateway-wide ones."""
    return {"connect_timeout": p.connect_timeout or settings.upstream_connect_timeout,
            "first_byte_timeout": p.timeout or settings.upstream_timeout,
            "idle_timeout": p.stream_idle_timeout or settings.stream_idle_timeout}


def check_endpoints(catalog: Iterable, providers: dict[str, Adapter]) -> None:
    """A start-up error when a model's endpoint is not served by a provider it is deployed on."""
    problems = [f"model {spec.id!r}: provider {d.provider!r} (kind {providers[d.provider].kind}) "
                f"does not serve the {spec.endpoint} endpoint"
                for spec in catalog for d in spec.deployments
                if d.provider in providers and not serves(providers[d.provider], spec.endpoint)]
    if problems:
        raise SettingsError("; ".join(problems))


def build_providers(settings: Settings, session: aiohttp.ClientSession,
                    catalog: Iterable | None = None) -> dict[str, Adapter]:
    out: dict[str, Adapter] = {}
    for name, p in settings.providers.items():
        problem = config_problem(p)
        if problem:
            raise SettingsError(f"[providers.{name}] {problem}")
        spec = KINDS[p.kind]
        if spec.needs_key and not p.api_key:
            continue   # not configured: its models are listed, not served
        out[name] = spec.build(p, session, **_timeouts(settings, p))
    if catalog is not None:
        check_endpoints(catalog, out)
    return out
