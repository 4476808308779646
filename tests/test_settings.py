"""Settings: the AICREDITS_* variables, the provider variables and the TOML file, loaded through
one typed schema; every bad setting is one SettingsError line naming the variable, or the file
and its key. (tests/cli/test_cli.py runs the same through `aicredits serve` and `migrate`.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aicredits.domain.catalog import ENTRY_KEYS
from aicredits.settings import CACHE_ENV, ENV_NAMES, TOOL_ENV, ModelRow, SettingsError, load_settings


def config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "aicredits.toml"
    path.write_text(text)
    return {"AICREDITS_CONFIG": str(path)}


def error_of(env: dict) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ what loads
def test_defaults_and_types(tmp_path):
    s = load_settings({"HOME": str(tmp_path)})
    assert (s.database_url, s.redis_url, s.usd_inr, s.markup) == (
        f"sqlite:///{tmp_path}/.local/share/aicredits/aicredits.db", None, "88", "0")   # docs/configuration.md
    assert (s.upstream_timeout, s.max_body_bytes, s.retries, s.access_log, s.log_level) == (120.0, 41943040, 2,
                                                                                             True, "INFO")
    assert s.key_cache_seconds == 1.0
    assert (s.hold_lease_seconds, s.settle_retry_seconds) == (30.0, 15.0)
    assert s.journal_dir == tmp_path / ".local/share/aicredits/settle-journal"
    assert str(load_settings({"AICREDITS_DATABASE_URL": "postgresql://db/x"}).journal_dir) == "settle-journal"
    assert str(load_settings({"AICREDITS_DATABASE_URL": "sqlite:////srv/gw/credits.db"}).journal_dir) == \
        "/srv/gw/settle-journal"
    assert str(load_settings({"AICREDITS_STATE_DIR": "/var/lib/gw"}).journal_dir) == "/var/lib/gw/settle-journal"
    assert set(s.providers) == {"openai", "anthropic", "gemini", "sarvam", "demo"}
    assert s.providers["openai"].api_key is None and s.extra_models == ()


def test_environment_wins_over_the_file_and_empty_means_unset(tmp_path):
    env = config(tmp_path, '[gateway]\nupstream_timeout = 30\nmarkup = "0.1"\nusd_inr = 83.5\naccess_log = false\n')
    s = load_settings({**env, "AICREDITS_UPSTREAM_TIMEOUT": "7.5", "AICREDITS_MARKUP": "",
                       "AICREDITS_LOG_LEVEL": "debug", "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": ""})
    assert s.upstream_timeout == 7.5            # the variable
    assert s.markup_fraction == pytest.approx(0.1) and s.markup == "0.1"   # empty variable: the file
    assert s.usd_inr == "83.5" and s.access_log is False and s.log_level == "DEBUG"
    assert s.providers["openai"].api_key == "sk-x"
    assert s.providers["openai"].base_url == "https://api.openai.com/v1"
    assert s.config_path == env["AICREDITS_CONFIG"]


def test_tool_variables_of_the_test_suite_and_bench_are_not_settings():
    load_settings({"AICREDITS_TEST_PG": "postgresql://x", "AICREDITS_TEST_REDIS": "redis://x",
                   "AICREDITS_BIN": "/bin/aicredits", "aicredits_lowercase": "ignored", "HOME": "/root"})


def test_providers_and_models_from_the_file(tmp_path):
    env = config(tmp_path, '''
[providers.groq]
base_url = "https://api.groq.com/openai/v1/"
api_key_env = "GROQ_API_KEY"
timeout = 60

[providers.anthropic]                 # a built-in name keeps its kind
base_url = "http://127.0.0.1:9/"

[[models]]
id = "groq/llama"
input_cost_per_1m = 0.59
output_cost_per_1m = "0.79"
tiers = [{above_prompt_tokens = 1000, input_cost_per_1m = 1}]
deployments = [{provider = "groq", weight = 2}]
''')
    s = load_settings({**env, "GROQ_API_KEY": "gsk-1", "ANTHROPIC_API_KEY": "ak"})
    groq = s.providers["groq"]
    assert (groq.kind, groq.base_url, groq.api_key, groq.timeout) == ("openai_compatible",
                                                                      "https://api.groq.com/openai/v1", "gsk-1", 60)
    assert (s.providers["anthropic"].kind, s.providers["anthropic"].api_key) == ("anthropic", "ak")
    assert s.extra_models == ({"id": "groq/llama", "input_cost_per_1m": 0.59, "output_cost_per_1m": "0.79",
                               "tiers": [{"above_prompt_tokens": 1000, "input_cost_per_1m": 1}],
                               "deployments": [{"provider": "groq", "weight": 2.0}]},)


def test_the_file_schema_has_every_catalog_key():
    assert set(ModelRow.model_fields) == set(ENTRY_KEYS)


# ------------------------------------------------------------------------------ what fails
def test_unknown_variable_is_named():
    msg = error_of({"AICREDITS_UPSTREAM_TIMEOUTS": "5"})
    assert msg.startswith("AICREDITS_UPSTREAM_TIMEOUTS (environment variable): unknown setting")
    assert "did you mean AICREDITS_UPSTREAM_TIMEOUT?" in msg


def test_every_documented_variable_is_known():
    root = Path(__file__).resolve().parent.parent
    # the reference; tests/test_docs.py checks every AICREDITS_* name in README.md and docs/
    for doc in ("docs/configuration.md",):
        text = (root / doc).read_text()
        documented = set(re.findall(r"`(AICREDITS_[A-Z0-9_]+)`", text)) - TOOL_ENV
        known = set(ENV_NAMES) | set(CACHE_ENV) | {"AICREDITS_CONFIG"}    # CACHE_ENV: docs/caching.md
        assert documented <= known, (doc, documented - known)
        assert set(ENV_NAMES) <= documented, (doc, set(ENV_NAMES) - documented)


def test_unknown_file_keys_are_named_with_the_file(tmp_path):
    env = config(tmp_path, "[gateway]\nupstream_timout = 5\n\n[providers.local]\nbase_url = 'http://x'\n"
                           "api_kye_env = 'K'\n\n[gatway]\n")
    msg = error_of(env)
    path = env["AICREDITS_CONFIG"]
    assert f"{path}: [gateway] upstream_timout: unknown key (did you mean upstream_timeout?)" in msg
    assert f"{path}: [providers.local] api_kye_env: unknown key (did you mean api_key_env?)" in msg
    assert f"{path}: gatway: unknown key (did you mean gateway?)" in msg


@pytest.mark.parametrize("name, value, says", [
    ("AICREDITS_UPSTREAM_TIMEOUT", "-1", "input should be greater than 0, got '-1'"),
    ("AICREDITS_STREAM_IDLE_TIMEOUT", "0", "input should be greater than 0"),
    ("AICREDITS_REDIS_TIMEOUT", "inf", "finite number"),
    ("AICREDITS_MAX_BODY_BYTES", "-1024", "input should be greater than or equal to 1, got '-1024'"),
    ("AICREDITS_MAX_BODY_BYTES", "40MB", "valid integer"),
    ("AICREDITS_RETRIES", "-1", "greater than or equal to 0"),
    ("AICREDITS_RATE_WINDOW_SECONDS", "7200", "less than or equal to 3600"),
    ("AICREDITS_USD_INR", "0", "must be positive"),
    ("AICREDITS_USD_INR", "eighty", "must be a decimal number, got 'eighty'"),
    ("AICREDITS_MARKUP", "-0.1", "must be non-negative"),
    ("AICREDITS_ACCESS_LOG", "sometimes", "valid boolean"),
    ("AICREDITS_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
    ("AICREDITS_LOG_FORMAT", "xml", "input should be 'auto', 'json' or 'text', got 'xml'"),
    ("AICREDITS_REDIS_URL", "http://127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL"),
    ("AICREDITS_REDIS_URL", "redis://127.0.0.1:99999/0", "has a port that is not a number from 0 to 65535"),
])
def test_bad_variable_values_are_named(name, value, says):
    msg = error_of({name: value})
    assert msg.startswith(f"{name} (environment variable): ") and says in msg, msg


@pytest.mark.parametrize("toml, where", [
    ("[gateway]\nupstream_timeout = -5\n", "[gateway] upstream_timeout: input should be greater than 0, got -5"),
    ("[gateway]\nmax_body_bytes = -1\n", "[gateway] max_body_bytes: input should be greater than or equal to 1"),
    ("[gateway]\nmax_body_bytes = true\n", "[gateway] max_body_bytes: must be a number, not true/false"),
    ("[providers.x]\nbase_url = 'http://x'\ntimeout = -1\n", "[providers.x] timeout: input should be greater than 0"),
    ("[providers.x]\nbase_url = 'http://x'\nkind = 'grpc'\n", "[providers.x] kind: unknown provider kind 'grpc' (known: anthropic, azure, demo, gemini, openai, "),
    ("[providers.x]\nkind = 'azure'\nbase_url = 'http://x'\n", "[providers.x]: kind azure needs api_version"),
    ("[providers.x]\nkind = 'openai_compatible'\n", "[providers.x] base_url: is required"),
    ("[[models]]\nid = 'x/m'\ninput_cost_per_1m = -1\n", '[[models]] #1 (id "x/m") input_cost_per_1m: must not be negative'),
    ("[[models]]\nid = 'x/m'\ncontext_window = 0\n", '[[models]] #1 (id "x/m") context_window: input should be'),
    ("[[models]]\nid = 'x/m'\nendpoint = 'video'\n", '[[models]] #1 (id "x/m") endpoint: input should be'),
    ("[[models]]\nname = 'no id'\n", "[[models]] #1 id: is required"),
    ("[[models]]\nid = 'x/m'\ntiers = [{above_prompt_tokens = 10, input_cost = 1}]\n",
     '[[models]] #1 (id "x/m") tiers[0].input_cost: unknown key (did you mean input_cost_per_1m?)'),
    ("[[models]]\nid = 'nomodelid'\n", "[[models]]: catalog entry needs an id of the form provider/model"),
])
def test_bad_file_values_are_named_with_the_file_and_key(tmp_path, toml, where):
    env = config(tmp_path, toml)
    msg = error_of(env)
    assert msg.startswith(env["AICREDITS_CONFIG"] + ": ") and where in msg, msg


def test_a_misspelt_model_price_key_stops_the_start(tmp_path):
    """Before, `input_cost_per_1M` was ignored: the model became unpriced, found only at call time."""
    env = config(tmp_path, "[[models]]\nid = 'local/llama'\ninput_cost_per_1M = 0.5\noutput_cost_per_1m = 0.7\n")
    msg = error_of(env)
    assert msg == (f'{env["AICREDITS_CONFIG"]}: [[models]] #1 (id "local/llama") input_cost_per_1M: unknown key '
                   "(did you mean input_cost_per_1m?)")


def test_the_file_itself(tmp_path):
    assert error_of({"AICREDITS_CONFIG": str(tmp_path / "missing.toml")}) == \
        f"AICREDITS_CONFIG={tmp_path / 'missing.toml'}: no such file"
    env = config(tmp_path, "[gateway\n")
    assert error_of(env).startswith(f"{env['AICREDITS_CONFIG']}: not valid TOML: ")


def test_secrets_are_never_echoed(tmp_path):
    env = config(tmp_path, "[providers.x]\nbase_url = 'http://x'\napi_key = 12345678\nheaders = {A = 987654}\n")
    msg = error_of(env)
    assert "[providers.x] api_key" in msg and "[providers.x] headers.A" in msg
    assert "12345678" not in msg and "987654" not in msg


def test_cache_settings_are_read_and_checked(tmp_path):
    s = load_settings({"AICREDITS_CACHE_EXACT": "true", "AICREDITS_CACHE_THRESHOLD": "0.95"})
    assert s.cache.exact and s.cache.threshold == 0.95 and not s.cache.semantic
    assert not load_settings({}).cache.enabled
    assert "AICREDITS_CACHE_THRESHOLD must be between 0 and 1" in error_of({"AICREDITS_CACHE_THRESHOLD": "2"})
    assert "AICREDITS_CACHE_EXACTT (environment variable): unknown setting" in error_of({"AICREDITS_CACHE_EXACTT": "1"})
    env = config(tmp_path, '[cache]\nsemantic = true\n[cache.keys."key_1"]\nscope = "key"\n')
    s = load_settings(env)
    assert s.cache.semantic and s.cache.keys["key_1"].scope == "key"
    assert "[cache]: unknown setting(s) semantik" in error_of(config(tmp_path, "[cache]\nsemantik = true\n"))
