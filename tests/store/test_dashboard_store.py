"""Migration 0003_dashboard on SQLite and PostgreSQL: it upgrades a 0002 database with rows
in it, the audit log refuses UPDATE and DELETE, and a disabled account's keys are not found."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aicredits.domain.keys import hash_key
from aicredits.services.admin import Admin
from aicredits.services.audit import Actor, Audit
from aicredits.services.auth import Auth
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate
from aicredits.wiring import open_billing_store
from tests.store.test_billing_store import _at_revision


async def test_upgrade_from_0002_keeps_accounts_and_keys(db_url):
    engine = make_engine(db_url)
    try:
        await _at_revision(engine, db_url, "0002")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, email, name, role, created_at) "
                                    "VALUES (1, 'old@example.com', '', 'user', 1)"))
            await conn.execute(text("INSERT INTO wallets (account_id, balance, held, total_added, total_spent, "
                                    "updated_at) VALUES (1, 0, 0, 0, 0, 1)"))
            await conn.execute(text("INSERT INTO api_keys (id, account_id, name, key_hash, display, spent, held, "
                                    "created_at) VALUES ('key_old', 1, 'old', :h, 'sk-…', 0, 0, 1)"),
                               {"h": hash_key("sk-" + "cd" * 32)})
        await migrate(engine, db_url)
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT disabled_at, timezone FROM accounts"))).one()
            assert tuple(row) == (None, None)
            assert (await conn.execute(text("SELECT last_used_at FROM api_keys"))).scalar() is None
            for table in ("web_sessions", "audit_log", "auth_tokens", "oidc_identities"):
                assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
    finally:
        await engine.dispose()


async def test_the_audit_log_is_append_only(db_url):
    engine = make_engine(db_url)
    try:
        await migrate(engine, db_url)
        audit = Audit(engine)
        row_id = await audit.record(Actor(None, "cli", "192.0.2.1"), "key.revoked", target="key_1",
                                    detail={"why": "test"})
        (entry,) = await audit.recent()
        assert (entry["id"], entry["actor"], entry["action"], entry["target"], entry["ip"], entry["detail"]) == (
            row_id, "cli", "key.revoked", "key_1", "192.0.2.1", {"why": "test"})
        for sql in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(sql))
        assert len(await audit.recent()) == 1
    finally:
        await engine.dispose()


async def test_a_disabled_accounts_keys_are_not_found(db_url):
    engine = make_engine(db_url)
    store = None
    try:
        await migrate(engine, db_url)
        admin = Admin(engine)
        created = await admin.create_key("k@example.com", name="k", credits=10_000_000)
        store = await open_billing_store(load_settings({"AICREDITS_DATABASE_URL": db_url}))
        assert (await store.find_key(hash_key(created["key"]))).key_id == created["id"]
        auth = Auth(engine)
        await auth.set_disabled("k@example.com", True, Actor.system("test"))
        assert await store.find_key(hash_key(created["key"])) is None
        await auth.set_disabled("K@example.com", False, Actor.system("test"))
        assert await store.find_key(hash_key(created["key"])) is not None
        # (keys create's own rows, key.created and credits.granted, come first)
        actions = [e["action"] for e in await Audit(engine).recent() if e["action"].startswith("account.")]
        assert actions == ["account.enabled", "account.disabled"]
    finally:
        if store is not None:
            await store.close()
        await engine.dispose()
