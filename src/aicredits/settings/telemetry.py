"""Observability settings: the /metrics bearer token and the OpenTelemetry exporter
(docs/operations.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from aicredits.settings.types import Strict, not_bool, url


def _otlp_headers(value: object) -> object:
    """'name=value,name2=value2' (the OTLP exporters' header list)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not all("=" in p and p.split("=", 1)[0].strip() for p in value.split(",")):
        raise ValueError("must be name=value pairs separated by commas")
    return value


class TelemetrySettings(Strict):
    metrics_token: str | None = Field(default=None, repr=False)   # GET /metrics needs it as a bearer token
    otel_endpoint: Annotated[str | None, BeforeValidator(url)] = None   # OTLP/HTTP collector; traces off without
    otel_headers: Annotated[str | None, BeforeValidator(_otlp_headers), Field(repr=False)] = None
    otel_service_name: str = "aicredits"
    otel_sample_ratio: Annotated[float, BeforeValidator(not_bool), Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    otel_propagate_upstream: bool = False    # send the attempt's traceparent to providers
