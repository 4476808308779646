"""The settings object: GatewaySettings (every scalar setting, from the modules of each idea)
and Settings (with the providers, the file's models and the caches' policy)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, model_validator

from aicredits.domain.cache_rules import CachePolicy
from aicredits.domain.money import to_fraction
from aicredits.settings.core import CoreSettings
from aicredits.settings.dashboard import DashboardSettings
from aicredits.settings.payments import PaymentFields
from aicredits.settings.providers import ProviderSettings
from aicredits.settings.telemetry import TelemetrySettings

ENV_PREFIX = "AICREDITS_"


# pydantic orders a model's fields from its last base to its first: core, dashboard, telemetry, payments
class GatewaySettings(PaymentFields, TelemetrySettings, DashboardSettings, CoreSettings):
    """Every scalar setting: AICREDITS_<NAME> in the environment, or <name> in the TOML file's
    [gateway] table (a set, non-empty variable wins)."""

    @model_validator(mode="after")
    def _across(self) -> Self:
        """The rules across settings, each idea's, in this order; the first broken one is reported."""
        self.check_payments()
        self.check_core()
        self.check_dashboard()
        return self


class Settings(GatewaySettings):
    config_path: str | None = None                              # AICREDITS_CONFIG
    database_from: str = "default"     # where database_url came from, for messages (see load_settings)
    providers: Mapping[str, ProviderSettings] = Field(default_factory=dict)
    extra_models: tuple[dict, ...] = ()                         # the file's [[models]], as written
    cache: Annotated[Any, Field(default_factory=CachePolicy)]   # response caches: AICREDITS_CACHE_*, [cache]
    key_cache_seconds: ClassVar[float] = 1.0   # a revoked key is refused within this (not a setting)

    @property
    def usd_inr_fraction(self) -> Fraction:
        return to_fraction(self.usd_inr)

    @property
    def markup_fraction(self) -> Fraction:
        return to_fraction(self.markup)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database's file (absolute), or None for PostgreSQL and :memory:."""
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if self.database_url.startswith(prefix):
                db = self.database_url[len(prefix):].split("?", 1)[0]
                return Path(db).absolute() if db and db != ":memory:" else None
        return None

    @property
    def grant_journal_dir(self) -> Path:
        """The grant journal of quota slices: beside the settle journal."""
        return self.journal_dir.with_name("grant-journal")

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
