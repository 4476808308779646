"""Migration 0004_history on SQLite and PostgreSQL: it upgrades a 0005_cache database with a ledger
and usage in it (the new indexes, admin_keys and the rollup tables, nothing else touched) and
downgrades again; a debit never takes more than the wallet has available."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from aicredits.store import operator as operator_repo
from aicredits.store.db import make_engine, migrate
from tests.services.history_data import add, new_account
from tests.store.test_billing_store import _alembic_config, _at_revision, head_revision

NEW_TABLES = {"admin_keys", "usage_daily", "ledger_daily", "rollup_state"}


def _indexes(sync_conn, table: str) -> set[str]:
    return {ix["name"] for ix in inspect(sync_conn).get_indexes(table)}


async def test_upgrade_from_the_revision_before_and_back(db_url):
    engine = make_engine(db_url)
    try:
        await _at_revision(engine, db_url, "0005_cache")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, email, name, role, created_at) "
                                    "VALUES (1, 'old@example.com', '', 'user', 1)"))
            await conn.execute(text("INSERT INTO wallets (account_id, balance, held, total_added, total_spent, "
                                    "updated_at) VALUES (1, 5, 0, 5, 0, 1)"))
            await conn.execute(text("INSERT INTO ledger_entries (account_id, kind, amount, balance_after, note, "
                                    "created_at) VALUES (1, 'grant', 5, 5, 'before 0004', 1)"))
        await migrate(engine, db_url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head_revision()
            assert (await conn.execute(text("SELECT note FROM ledger_entries"))).scalar() == "before 0004"
            ledger_ix = await conn.run_sync(_indexes, "ledger_entries")
            usage_ix = await conn.run_sync(_indexes, "usage_records")
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"ix_ledger_account_time", "ix_ledger_account_kind_time", "ix_ledger_account_id"} <= ledger_ix
        assert "ix_usage_account_time_id" in usage_ix
        assert "ix_usage_account_time" not in usage_ix
        assert NEW_TABLES <= tables

        from alembic import command
        cfg = _alembic_config(db_url)

        def down(connection) -> None:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0005_cache")
        async with engine.begin() as conn:
            await conn.run_sync(down)
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert "ix_usage_account_time" in await conn.run_sync(_indexes, "usage_records")
            assert (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar() == 1
        assert not NEW_TABLES & tables
    finally:
        await engine.dispose()


async def test_a_debit_never_takes_more_than_is_available(db_url):
    engine = make_engine(db_url)
    try:
        await migrate(engine, db_url)
        a = await new_account(engine)
        await add(engine, a, [("grant", 1, 1_000_000)])
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE wallets SET held = 300000 WHERE account_id = :a"), {"a": a})
        with pytest.raises(operator_repo.DebitRefused) as refused:
            async with engine.begin() as conn:
                await operator_repo.debit(conn, a, 700_001, note="too much")
        assert refused.value.available == 700_000
        async with engine.begin() as conn:
            assert await operator_repo.debit(conn, a, 700_000, note="all that is free") == 300_000
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT kind, amount, balance_after, note FROM ledger_entries "
                                            "WHERE account_id = :a ORDER BY id"), {"a": a})).all()
        assert [tuple(r) for r in rows] == [("grant", 1_000_000, 1_000_000, "grant note"),
                                            ("debit", -700_000, 300_000, "all that is free")]
    finally:
        await engine.dispose()
