"""`migrate` on a database already at the newest migration is one query and loads no alembic
(every CLI command migrates first); a database behind is still upgraded by alembic."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from aicredits.store.db import _alembic_config, head_revision, make_engine, migrate


def test_head_revision_is_alembics_head():
    from alembic.script import ScriptDirectory

    assert head_revision() is not None
    assert ScriptDirectory.from_config(_alembic_config("sqlite://")).get_heads() == [head_revision()]


async def _version(engine) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()]


async def test_a_database_behind_is_upgraded_and_one_at_head_is_left_alone(db_url):
    from alembic import command

    engine = make_engine(db_url)
    try:
        cfg = _alembic_config(db_url)

        def to_0002(connection) -> None:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0002")
        async with engine.begin() as conn:
            await conn.run_sync(to_0002)
        assert await _version(engine) == ["0002"]
        await migrate(engine, db_url)
        assert await _version(engine) == [head_revision()]
        await migrate(engine, db_url)   # at head: nothing to do, nothing breaks
        assert await _version(engine) == [head_revision()]
    finally:
        await engine.dispose()


def test_migrate_at_head_loads_no_alembic(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    script = ("import asyncio, sys\n"
              "from aicredits.store.db import make_engine, migrate\n"
              "async def go(url):\n"
              "    engine = make_engine(url)\n"
              "    await migrate(engine, url)\n"
              "    await engine.dispose()\n"
              "asyncio.run(go(sys.argv[1]))\n"
              "print('alembic' in sys.modules)\n")
    first = subprocess.run([sys.executable, "-c", script, url], check=False, capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "True"    # a new database: alembic creates the schema
    again = subprocess.run([sys.executable, "-c", script, url], check=False, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "False"   # at head: one query, no alembic
