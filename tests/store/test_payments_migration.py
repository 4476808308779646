"""Migration 0003_payments on SQLite and PostgreSQL: from a 0002 database with money in it, the
top-up tables appear empty and nothing else changes; downgrading to 0003_dashboard (the revision
before it) removes them again."""

from __future__ import annotations

from sqlalchemy import inspect, text

from aicredits.services.admin import Admin
from aicredits.store.db import _alembic_config, make_engine, migrate


async def _run(engine, url: str, fn) -> None:
    from alembic import command

    cfg = _alembic_config(url)

    def run(connection) -> None:
        cfg.attributes["connection"] = connection
        fn(command, cfg)
    async with engine.begin() as conn:
        await conn.run_sync(run)


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_from_0002_and_back(db_url):
    engine = make_engine(db_url)
    try:
        await _run(engine, db_url, lambda command, cfg: command.upgrade(cfg, "0002"))
        assert not {"topups", "payments", "refunds"} & await _tables(engine)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, email, name, role, created_at) "
                                    "VALUES (1, 'old@example.com', '', 'user', 1)"))
            await conn.execute(text("INSERT INTO wallets (account_id, balance, held, total_added, total_spent, "
                                    "updated_at) VALUES (1, 7000000, 0, 7000000, 0, 1)"))
            await conn.execute(text("INSERT INTO ledger_entries (account_id, kind, amount, balance_after, note, "
                                    "created_at) VALUES (1, 'grant', 7000000, 7000000, 'before 0003', 1)"))
        await migrate(engine, db_url)
        assert {"topups", "payments", "refunds"} <= await _tables(engine)
        async with engine.connect() as conn:
            for table in ("topups", "payments", "refunds"):
                assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
        admin = Admin(engine)
        assert (await admin.wallet("old@example.com"))["balance"] == 7_000_000
        assert await admin.verify() == []
        await _run(engine, db_url, lambda command, cfg: command.downgrade(cfg, "0003_dashboard"))
        assert not {"topups", "payments", "refunds"} & await _tables(engine)
        assert (await admin.wallet("old@example.com"))["balance"] == 7_000_000
    finally:
        await engine.dispose()
