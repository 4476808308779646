"""Settings: one typed schema (pydantic models, extra="forbid") for the AICREDITS_*
environment variables, the provider variables named as their SDKs name them, and the TOML
file at AICREDITS_CONFIG. Built once at start and passed in; nothing else reads the
environment. docs/configuration.md is the reference.

A bad setting stops the start with one SettingsError line naming the variable, or the file
and its key. pydantic-settings' BaseSettings is not used: it reads os.environ on its own,
ignores unknown AICREDITS_* variables (we refuse them) and cannot say which source a bad
value came from; here the environment is one Mapping, read once, and every error names its
source.

One module per idea, all imported from here (`from aicredits.settings import Settings`):

- `core.py`: the database, Redis, rates, upstream timeouts, retries, request limits, logs;
- `dashboard.py`: the dashboard, its sign-in (OpenID Connect) and its mail;
- `payments.py`: top-ups (`PaymentSettings`);
- `telemetry.py`: /metrics and OpenTelemetry;
- `cache.py`: the response caches (their policy is read by domain/cache_rules.py);
- `providers.py`: the providers and their [providers.NAME] tables;
- `file.py`: the TOML file's tables; `schema.py`: `GatewaySettings` (every scalar setting, the
  four idea models together) and `Settings`; `load.py`: `load_settings()` and its messages;
  `types.py`: the shared value types and `SettingsError`.
"""

from __future__ import annotations

from aicredits.settings.cache import CACHE_ENV
from aicredits.settings.core import DEFAULT_DB_FILE, DEFAULT_DB_URL, CoreSettings
from aicredits.settings.dashboard import DashboardSettings
from aicredits.settings.file import ConfigFile, DeploymentRow, ModelRow, TierRow
from aicredits.settings.load import (
    CONFIG_ENV,
    SECRET_KEYS,
    TOOL_ENV,
    default_database_url,
    load_settings,
    state_home,
)
from aicredits.settings.payments import PAYMENT_PROVIDERS, PaymentFields, PaymentSettings
from aicredits.settings.providers import ProviderSettings, ProviderTable
from aicredits.settings.schema import ENV_NAMES, ENV_PREFIX, SCALARS, GatewaySettings, Settings
from aicredits.settings.telemetry import TelemetrySettings
from aicredits.settings.types import SettingsError

__all__ = [
    "CACHE_ENV", "CONFIG_ENV", "DEFAULT_DB_FILE", "DEFAULT_DB_URL", "ENV_NAMES", "ENV_PREFIX", "PAYMENT_PROVIDERS", "SCALARS",
    "SECRET_KEYS", "TOOL_ENV", "ConfigFile", "CoreSettings", "DashboardSettings", "DeploymentRow",
    "GatewaySettings", "ModelRow", "PaymentFields", "PaymentSettings", "ProviderSettings", "ProviderTable",
    "Settings", "SettingsError", "TelemetrySettings", "TierRow", "default_database_url", "load_settings",
    "state_home",
]
