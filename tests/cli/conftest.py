"""Fixtures of the CLI tests: a migrated SQLite database made once and copied, since only
`serve` and `migrate` create a database and the other commands need one to exist."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest


def migrate_now(url: str) -> str:
    """Create (SQLite) and migrate the database at url, in this process; returns url."""
    from aicredits.store.db import make_engine, migrate

    async def go():
        engine = make_engine(url)
        try:
            await migrate(engine, url)
        finally:
            await engine.dispose()
    asyncio.run(go())
    return url


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate_now(f"sqlite:///{path}")
    return path


@pytest.fixture
def new_db(migrated_template):
    """new_db(path) -> the sqlite:/// URL of a migrated, empty database at path."""
    def make(path: Path) -> str:
        shutil.copyfile(migrated_template, path)
        return f"sqlite:///{path}"
    return make
