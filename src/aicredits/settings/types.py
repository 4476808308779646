"""The value types every settings module shares: the validators of numbers, prices, zones, URLs
and header lists, the `Seconds`/`Count`/`Price` aliases, the strict base model (extra="forbid",
frozen), and SettingsError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from aicredits.domain.money import to_fraction


class SettingsError(ValueError):
    """A bad setting: one line naming the variable, or the file and the key."""


def not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")   # noqa: TRY004 - pydantic wants ValueError
    return value


def decimal(minimum: Literal["positive", "non-negative"]) -> BeforeValidator:
    def check(value: object) -> str:
        not_bool(value)
        try:
            frac = to_fraction(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("must be a decimal number") from exc
        if frac < 0 or (minimum == "positive" and frac == 0):
            raise ValueError(f"must be {minimum}")
        return repr(value) if isinstance(value, float) else str(value)
    return BeforeValidator(check)


def _price(value: object) -> object:
    not_bool(value)
    try:
        frac = to_fraction(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a price (a number)") from exc
    if frac < 0:
        raise ValueError("must not be negative")
    return value


def zone(value: object) -> object:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError("must be a time zone name such as Asia/Kolkata") from exc
    return value


def url(value: object) -> object:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def check_redis_url(value: object) -> object:
    """redis://, rediss:// or unix://, with a port (when given) from 0 to 65535."""
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


def lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(not_bool), Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(not_bool), Field(ge=1)]
Price = Annotated[int | float | str, BeforeValidator(_price)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]
Currency = Annotated[Literal["USD", "INR"], BeforeValidator(_upper)]
Validator = Callable[[Any], Any]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
