"""load_settings(): the environment and the TOML file, read once, checked against the schema;
every bad variable or file key named on one SettingsError line."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from aicredits.settings.cache import CACHE_ENV, cache_policy
from aicredits.settings.core import DEFAULT_DB_FILE
from aicredits.settings.file import ConfigFile, DeploymentRow, ModelRow, TierRow
from aicredits.settings.providers import ProviderTable, check_kinds, providers_of
from aicredits.settings.schema import ENV_NAMES, ENV_PREFIX, SCALARS, GatewaySettings, Settings
from aicredits.settings.types import SettingsError

CONFIG_ENV = "AICREDITS_CONFIG"
# AICREDITS_* names read by the test suite (tests/conftest.py, tests/web/conftest.py) and bench/run.py,
# not by the gateway
TOOL_ENV = frozenset({"AICREDITS_TEST_PG", "AICREDITS_TEST_REDIS", "AICREDITS_TEST_CHROMIUM", "AICREDITS_TEST_SCREENSHOTS",
                      "AICREDITS_BIN"})
SECRET_KEYS = frozenset({"api_key", "headers", "database_url", "redis_url", "razorpay_key_secret",
                         "razorpay_webhook_secret", "metrics_token", "otel_headers"})   # never echoed in an error


def _suggest(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.7)
    if not close:
        return ""
    return f" (did you mean {next(k for k in known if k.lower() == close[0])}?)"


def _message(err: ErrorDetails, key: str, known: Iterable[str] = ()) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key" + _suggest(key, known)
    if err["type"] == "missing":
        return "is required"
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if not SECRET_KEYS.intersection(str(p) for p in err["loc"]) and isinstance(err.get("input"), (str, int, float)):
        msg += f", got {err['input']!r}"
    return msg


def _toml_where(loc: tuple[int | str, ...], doc: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """('[[models]] #2 (id "x/y")', 'tiers[0].input_cost_per_1m', known keys there) for a pydantic loc."""
    head, rest = loc[0], list(loc[1:])
    known: tuple[str, ...] = ()
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


def _read_file(path: str) -> dict[str, Any]:
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


def _gateway(env: Mapping[str, str], table: object, path: str | None) -> tuple[GatewaySettings | None, list[str]]:
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


def _file_errors(exc: ValidationError, doc: dict[str, Any], path: str | None) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where, key, known = _toml_where(err["loc"], doc)
        leaf = next((p for p in reversed(err["loc"]) if isinstance(p, str)), key)
        lines.append(f"{path}: {' '.join(filter(None, (where, key)))}: {_message(err, leaf, known)}")
    return lines


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
    cache = cache_policy(env, cfg.cache)
    providers = providers_of(env, cfg.providers, path)
    check_kinds(providers, path)
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


def _check_catalog(extra_models: tuple[dict[str, Any], ...], path: str | None) -> None:
    """Build the catalog once now, so a bad [[models]] row stops the start, not a call."""
    from aicredits.catalog import load_catalog
    try:
        load_catalog(extra_models)
    except ValueError as exc:
        raise SettingsError(f"{path}: [[models]]: {exc}" if extra_models else f"built-in catalog: {exc}") from None
