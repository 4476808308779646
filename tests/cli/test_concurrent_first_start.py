"""Several `serve` processes started at the same moment on one new, empty database (replicas of a
compose file, `serve` on two hosts against one PostgreSQL): one migrates and creates the first
admin, the others wait for it (a lock around the first start's preparation) and then start as on
a restart. Real processes; `start_gateway.many` prepares a shared database first and is not used."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.cli.invoke import in_process

PROCESSES = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aicredits.db"
    return request.getfixturevalue("make_pg_db")()


def test_processes_first_started_at_once_on_one_empty_database(start_gateway, empty_db, tmp_path):
    gateways = [start_gateway.launch(db_url=empty_db) for _ in range(PROCESSES)]   # all at once
    for gw in gateways:
        gw.wait_ready()   # every one starts: none exits on a duplicate admin or a half-made schema
    logs = [gw.log() for gw in gateways]
    assert all("Traceback" not in log for log in logs), "\n".join(logs)
    assert sum("first start: admin account created" in log for log in logs) == 1, "\n".join(logs)

    # exactly one credentials file: beside the SQLite file, else in one process's working directory
    places = {tmp_path} | {gw.workdir for gw in gateways}
    files = [f for place in places for f in place.glob("aicredits-first-admin*.txt")]
    assert len(files) == 1, files
    assert "admin@aicredits.local" in files[0].read_text()

    async def accounts(admin):
        async with admin.engine.connect() as conn:
            return (await conn.execute(text("SELECT email, role FROM accounts"))).all()
    assert [tuple(row) for row in gateways[0].admin(accounts)] == [("admin@aicredits.local", "admin")]

    res = in_process(["ledger", "verify", "--database", empty_db], env=gateways[0].env)
    assert res.returncode == 0 and "ledger verify: ok" in res.stdout, res.stdout + res.stderr
    # and each one serves: the first key works through any of them
    key = files[0].read_text().split("API key:", 1)[1].split()[0]
    for gw in gateways:
        assert gw.credits(key)["balance"] == 100.0


def test_migrate_commands_at_once_on_one_new_sqlite_file(tmp_path):
    """`aicredits migrate` run by several processes at once (or beside a first `serve`) on one new
    SQLite file: they take turns (a lock file beside the database), every one exits 0, and the
    schema is at the newest migration once."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/aicredits.db"
    env = {**os.environ, "AICREDITS_DATABASE_URL": url}
    procs = [subprocess.Popen([sys.executable, "-m", "aicredits", "migrate"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(PROCESSES)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, "\n".join(outs)
    assert all("is at the newest migration" in out and "Traceback" not in out for out in outs), "\n".join(outs)
    res = in_process(["ledger", "verify", "--database", url], env=env)
    assert res.returncode == 0 and "ledger verify: ok" in res.stdout, res.stdout + res.stderr
