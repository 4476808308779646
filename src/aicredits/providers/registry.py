"""Provider name -> adapter, built from settings. A native adapter adds one line here."""

from __future__ import annotations

import aiohttp

from aicredits.providers.anthropic import AnthropicProvider
from aicredits.providers.base import ChatProvider
from aicredits.providers.demo import DemoProvider
from aicredits.providers.openai_compat import OpenAICompatible
from aicredits.providers.sarvam import SarvamProvider
from aicredits.settings import Settings

OPENAI_SHAPED = {"openai", "openai_compatible", "gemini", "azure"}
NEEDS_KEY = {"openai", "gemini", "anthropic", "sarvam", "azure"}


def _timeouts(settings: Settings, p) -> dict:
    """The provider's own timeouts, falling back to the gateway-wide ones."""
    return {"connect_timeout": p.connect_timeout or settings.upstream_connect_timeout,
            "first_byte_timeout": p.timeout or settings.upstream_timeout,
            "idle_timeout": p.stream_idle_timeout or settings.stream_idle_timeout}


def build_providers(settings: Settings, session: aiohttp.ClientSession) -> dict[str, ChatProvider]:
    out: dict[str, ChatProvider] = {}
    for name, p in settings.providers.items():
        if p.kind == "demo":
            out[name] = DemoProvider()
        elif p.kind in NEEDS_KEY and not p.api_key:
            continue   # not configured: its models are listed, not served
        elif p.kind in OPENAI_SHAPED:
            out[name] = OpenAICompatible(p, session, **_timeouts(settings, p))
        elif p.kind == "anthropic":
            out[name] = AnthropicProvider(p, session, **_timeouts(settings, p))
        elif p.kind == "sarvam":
            out[name] = SarvamProvider(p, session, **_timeouts(settings, p))
    return out
