"""`keys create --expires --models`, `keys limit --expires --models` and `keys list` (README,
"CLI"), in this process (tests/cli/test_cli.py runs `keys` commands as a real subprocess too)."""

from __future__ import annotations

import time
from datetime import datetime

from tests.cli.test_cli import ok, one_json, run, url  # noqa: F401 - the fixture


def test_keys_create_with_an_expiry_and_models_and_keys_list_shows_them(url):  # noqa: F811
    made = one_json(ok(url, "keys", "create", "--email", "scoped@example.com", "--expires", "30d",
                       "--models", "openai/*, demo/*", "--json"))
    assert made["models"] == ["openai/*", "demo/*"]
    in_30_days = time.time() + 30 * 86400
    assert made["expires_at"].endswith("Z")
    dated = one_json(ok(url, "keys", "create", "--email", "dated@example.com", "--expires", "2099-01-01", "--json"))
    assert (dated["expires_at"], dated["models"]) == ("2099-01-01T00:00:00Z", None)
    rows = {r["id"]: r for r in one_json(ok(url, "keys", "list", "--json"))}
    assert rows[made["id"]]["models"] == ["openai/*", "demo/*"]
    assert rows[dated["id"]]["expires_at"] == "2099-01-01T00:00:00Z" and rows[dated["id"]]["models"] is None
    shown = datetime.fromisoformat(rows[made["id"]]["expires_at"]).timestamp()
    assert abs(shown - in_30_days) < 120
    table = ok(url, "keys", "list", env={"COLUMNS": "250"}).stdout
    assert "expires" in table and "models" in table and "2099-01-01T00:00:00Z" in table
    assert "openai/*,demo/*" in table


def test_a_bad_expiry_or_model_pattern_is_one_clear_line_and_exit_2(url):  # noqa: F811
    first = one_json(ok(url, "keys", "create", "--email", "good@example.com", "--json"))
    for args, says in ((("--expires", "soon"), "--expires: 'soon' is neither a duration"),
                       (("--expires", "2001-01-01"), "--expires: '2001-01-01' is in the past"),
                       (("--models", "openai/* demo"), "--models: 'openai/* demo' is not a model id")):
        proc = run(url, "keys", "create", "--email", "bad@example.com", *args)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert [r["id"] for r in one_json(ok(url, "keys", "list", "--json"))] == [first["id"]]   # none made


def test_keys_limit_changes_and_clears_an_expiry_and_a_model_list(url):  # noqa: F811
    made = one_json(ok(url, "keys", "create", "--email", "later@example.com", "--rpm", "7", "--json"))
    out = one_json(ok(url, "keys", "limit", made["id"], "--expires", "2099-06-01", "--models", "demo/*", "--json"))
    assert out == {"id": made["id"], "rpm": 7, "tpm": None, "expires_at": "2099-06-01T00:00:00Z", "models": ["demo/*"]}
    # left out: kept
    text = ok(url, "keys", "limit", made["id"], "--tpm", "900").stdout
    assert f"{made['id']}: rpm 7, tpm 900, expires 2099-06-01T00:00:00Z, models demo/*" in text
    row = {r["id"]: r for r in one_json(ok(url, "keys", "list", "--json"))}[made["id"]]
    assert (row["expires_at"], row["models"]) == ("2099-06-01T00:00:00Z", ["demo/*"])
    cleared = one_json(ok(url, "keys", "limit", made["id"], "--expires", "none", "--models", "NONE", "--json"))
    assert (cleared["expires_at"], cleared["models"], cleared["tpm"]) == (None, None, 900)
    for args, says in ((("--expires", "2001-01-01"), "--expires: '2001-01-01' is in the past"),
                       (("--models", "a b"), "--models: 'a b' is not a model id"),
                       (("--expires", " "), "--expires is empty")):
        proc = run(url, "keys", "limit", made["id"], *args)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    again = {r["id"]: r for r in one_json(ok(url, "keys", "list", "--json"))}[made["id"]]
    assert (again["expires_at"], again["models"]) == (None, None)
