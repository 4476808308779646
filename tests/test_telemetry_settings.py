"""The observability settings (docs/configuration.md): AICREDITS_METRICS_TOKEN and AICREDITS_OTEL_*,
typed and checked at start; the secrets among them never echoed in an error."""

from __future__ import annotations

import pytest

from aicredits.infra.tracing import parse_headers, traces_url
from aicredits.settings import SettingsError, load_settings


def test_defaults_trace_nothing_and_leave_metrics_open():
    s = load_settings({})
    assert s.metrics_token is None and s.otel_endpoint is None
    assert (s.otel_service_name, s.otel_sample_ratio, s.otel_propagate_upstream) == ("aicredits", 1.0, False)


def test_values_are_read_and_secrets_not_shown():
    s = load_settings({"AICREDITS_METRICS_TOKEN": "t0k3n", "AICREDITS_OTEL_ENDPOINT": "http://127.0.0.1:4318",
                       "AICREDITS_OTEL_HEADERS": "x-api-key=s3cret, x-team=ops", "AICREDITS_OTEL_SAMPLE_RATIO": "0.25",
                       "AICREDITS_OTEL_PROPAGATE_UPSTREAM": "yes", "AICREDITS_OTEL_SERVICE_NAME": "gw-1"})
    assert (s.metrics_token, s.otel_endpoint, s.otel_sample_ratio, s.otel_propagate_upstream) == \
        ("t0k3n", "http://127.0.0.1:4318", 0.25, True)
    assert "t0k3n" not in repr(s) and "s3cret" not in repr(s)
    assert parse_headers(s.otel_headers) == {"x-api-key": "s3cret", "x-team": "ops"}


@pytest.mark.parametrize("name, value, message", [
    ("AICREDITS_OTEL_SAMPLE_RATIO", "1.5", "less than or equal to 1"),
    ("AICREDITS_OTEL_SAMPLE_RATIO", "-0.1", "greater than or equal to 0"),
    ("AICREDITS_OTEL_SAMPLE_RATIO", "nan", "greater than or equal to 0"),
    ("AICREDITS_OTEL_ENDPOINT", "127.0.0.1:4318", "must start with http:// or https://"),
    ("AICREDITS_OTEL_PROPAGATE_UPSTREAM", "sometimes", "boolean"),
    ("AICREDITS_OTEL_HEADERS", "just-a-secret-token", "name=value pairs"),
])
def test_bad_values_stop_the_start(name, value, message):
    with pytest.raises(SettingsError) as err:
        load_settings({name: value})
    text = str(err.value)
    assert text.startswith(f"{name} (environment variable):") and message in text, text
    if name == "AICREDITS_OTEL_HEADERS":
        assert value not in text   # a secret is never echoed


def test_the_traces_path():
    assert traces_url("http://c:4318") == traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"
