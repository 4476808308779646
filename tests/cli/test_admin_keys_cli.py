"""`aicredits admin-keys create|list|revoke` (`create` as a real subprocess, the rest in this
process): the key is printed once (sk-admin- + 64 hex), stored only as its hash, owned by an
admin account (a user account is refused), listed without its secret, revoked; each step
audited, as are the CLI's grants and key changes."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from tests.cli.test_cli import ok, one_json, run

ADMIN_KEY_RE = re.compile(r"^sk-admin-[0-9a-f]{64}$")


@pytest.fixture
def url(tmp_path, new_db) -> str:
    """A migrated, empty database (only serve and migrate create one)."""
    return new_db(tmp_path / "admin-keys.db")


def test_create_list_revoke(url, tmp_path):
    ok(url, "users", "create", "--email", "root@example.in", "--admin", "--password", "long enough pass")
    ok(url, "users", "create", "--email", "plain@example.in", "--password", "long enough pass")
    created = one_json(ok(url, "admin-keys", "create", "--email", "root@example.in", "--name", "deploy", "--json",
                          process=True))
    assert ADMIN_KEY_RE.match(created["key"]) and created["owner"] == "root@example.in"

    db = sqlite3.connect(tmp_path / "admin-keys.db")
    stored = db.execute("SELECT key_hash, display FROM admin_keys").fetchall()
    assert len(stored) == 1 and created["key"] not in repr(stored)
    listed = json.loads(ok(url, "admin-keys", "list", "--json").stdout)
    assert [k["id"] for k in listed] == [created["id"]] and created["key"] not in json.dumps(listed)
    assert listed[0]["revoked"] is False and listed[0]["display"].startswith("sk-admin-")

    refused = run(url, "admin-keys", "create", "--email", "plain@example.in")
    assert refused.returncode == 1 and "not an enabled admin" in refused.stderr
    missing = run(url, "admin-keys", "create", "--email", "nobody@example.in")
    assert missing.returncode == 1 and "No account" in missing.stderr

    assert "revoked" in ok(url, "admin-keys", "revoke", created["id"]).stdout
    assert "already revoked" in ok(url, "admin-keys", "revoke", created["id"]).stdout
    assert run(url, "admin-keys", "revoke", "adm_nope").returncode == 1
    actions = [r[0] for r in db.execute("SELECT action, actor FROM audit_log ORDER BY id")]
    assert actions == ["user.created", "user.created", "admin_key.created", "admin_key.revoked"]
    assert {r[0] for r in db.execute("SELECT actor FROM audit_log")} == {"cli"}
    assert "deploy" in ok(url, "admin-keys", "list").stdout


def test_the_clis_operator_actions_are_audited(url, tmp_path):
    key = one_json(ok(url, "keys", "create", "--email", "dev@example.in", "--credits", "5", "--json"))
    ok(url, "wallet", "grant", "2.5", "--email", "dev@example.in", "--note", "goodwill")
    ok(url, "keys", "limit", key["id"], "--rpm", "10")
    ok(url, "keys", "revoke", key["id"])
    db = sqlite3.connect(tmp_path / "admin-keys.db")
    rows = db.execute("SELECT actor, action, target, detail FROM audit_log ORDER BY id").fetchall()
    assert [r[1] for r in rows] == ["credits.granted", "key.created", "credits.granted", "key.limits", "key.revoked"]
    assert {r[0] for r in rows} == {"cli"}
    assert json.loads(rows[2][3]) == {"id": 1, "amount": 2_500_000, "reason": "goodwill", "balance_after": 7_500_000}
    assert key["key"] not in repr(rows)
