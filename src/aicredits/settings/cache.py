"""The response caches' settings: AICREDITS_CACHE_* and the file's [cache] table, read and
checked by domain/cache_rules.py's `load_policy` into a CachePolicy (docs/caching.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aicredits.domain.cache_rules import CACHE_ENV, CachePolicy, load_policy
from aicredits.settings.types import SettingsError

__all__ = ["CACHE_ENV", "CachePolicy", "cache_policy"]


def cache_policy(env: Mapping[str, str], table: Mapping[str, Any]) -> CachePolicy:
    """The caches' policy from the environment and [cache]; a SettingsError naming the bad one."""
    try:
        return load_policy(env, table)
    except ValueError as exc:
        raise SettingsError(f"{exc} (docs/caching.md)") from None
