"""`aicredits users reset-link|invite|disable|enable`, in this process (tests/cli/test_cli.py `run`;
the users family's real subprocess is test_cli.py's `users create`)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.cli.test_cli import ok, run


@pytest.fixture
def url(tmp_path, new_db) -> str:
    """A migrated, empty database (only serve and migrate create one)."""
    return new_db(tmp_path / "cli.db")


def test_reset_link_and_invite_print_one_time_links(url, tmp_path):
    ok(url, "users", "create", "--email", "Asha@Example.in", "--password", "a long password")
    link = ok(url, "users", "reset-link", "asha@example.in",
              env={"AICREDITS_PUBLIC_URL": "https://credits.example.in"}).stdout.strip()
    assert link.startswith("https://credits.example.in/dashboard/reset/new?token=") and len(link) > 80
    missing = run(url, "users", "reset-link", "nobody@example.in")
    assert missing.returncode == 1 and "no enabled account" in missing.stderr
    invite = ok(url, "users", "invite", "new@example.in").stdout.strip()
    assert invite.startswith("http://127.0.0.1:8000/dashboard/signup?invite=")
    db = sqlite3.connect(tmp_path / "cli.db")
    assert [r[0] for r in db.execute("SELECT purpose FROM auth_tokens ORDER BY created_at")] == ["reset", "invite"]
    assert token_not_stored(db, link.split("token=")[1])


def token_not_stored(db, token: str) -> bool:
    return all(token not in str(row) for row in db.execute("SELECT * FROM auth_tokens"))


def test_disable_and_enable_are_audited(url, tmp_path):
    ok(url, "users", "create", "--email", "u@example.in", "--password", "a long password")
    assert ok(url, "users", "disable", "u@example.in").stdout.strip() == "disabled u@example.in"
    ok(url, "users", "enable", "u@example.in")
    db = sqlite3.connect(tmp_path / "cli.db")
    assert db.execute("SELECT disabled_at FROM accounts").fetchone() == (None,)
    assert [r for r in db.execute("SELECT actor, action, target FROM audit_log ORDER BY id")] == [
        ("cli", "user.created", "u@example.in"),
        ("cli", "account.disabled", "u@example.in"), ("cli", "account.enabled", "u@example.in")]
    assert run(url, "users", "disable", "ghost@example.in").returncode == 1
