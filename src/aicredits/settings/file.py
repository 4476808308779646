"""The TOML file at AICREDITS_CONFIG: its tables ([gateway], [providers.NAME], [[models]],
[cache]) as strict models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from aicredits.domain.catalog import ENDPOINTS
from aicredits.settings.providers import ProviderTable
from aicredits.settings.types import Count, Currency, Price, Strict, not_bool


class TierRow(Strict):
    above_prompt_tokens: Count
    input_cost_per_1m: Price | None = None
    output_cost_per_1m: Price | None = None
    cache_read_cost_per_1m: Price | None = None
    cache_write_cost_per_1m: Price | None = None
    cache_write_1h_cost_per_1m: Price | None = None


class DeploymentRow(Strict):
    provider: str
    upstream_id: str | None = None
    weight: Annotated[float, BeforeValidator(not_bool), Field(gt=0, allow_inf_nan=False)] = 1.0


class ModelRow(Strict):
    """[[models]]: the fields of catalog/models.toml (domain/catalog.py ENTRY_KEYS; a test keeps
    the two the same)."""
    id: str
    name: str | None = None
    provider: str | None = None
    upstream_id: str | None = None
    endpoint: Literal[ENDPOINTS] | None = None  # type: ignore[valid-type]
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


class ConfigFile(Strict):
    gateway: dict[str, Any] = Field(default_factory=dict)     # checked as GatewaySettings
    providers: dict[str, ProviderTable] = Field(default_factory=dict)
    models: list[ModelRow] = Field(default_factory=list)
    cache: dict[str, Any] = Field(default_factory=dict)       # checked by domain/cache_rules.load_policy
