"""The restore drill of docs/operations.md ("Back up and restore"), with the same commands, on
SQLite and PostgreSQL: a running gateway with charged calls is backed up while it serves, the
backup is restored into a fresh database, `aicredits ledger verify` passes there and every
wallet's balance, holds and totals are the ones of the original; a gateway started on the restored
database serves and charges the same keys."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from aicredits.domain.money import micros_to_inr
from tests.conftest import HTTP, GatewayProcess


def aicredits(url: str, cwd, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AICREDITS_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "aicredits", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)


def admin(url: str, fn):
    """`fn(Admin)` on the database at `url`, in this process: what `aicredits wallet show` and
    `ledger verify` read, without a CLI process each (the CLI itself is tested in tests/cli/)."""
    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine

    async def go():
        engine = make_engine(url)
        try:
            return await fn(Admin(engine))
        finally:
            await engine.dispose()
    return asyncio.run(go())


def wallets(url: str, emails: list[str]) -> dict:
    """Every wallet's balance, holds, totals and ledger entries (micro-INR)."""
    async def read(a):
        return {email: await a.wallet(email) for email in emails}
    return admin(url, read)


def shown(wallet: dict) -> dict:
    """A wallet as `aicredits wallet show --json` prints it: INR amounts, and its ledger entries by
    call id and INR amount (newest first, as the command lists them)."""
    out = {k: micros_to_inr(v) if k in ("balance", "held", "available", "total_added", "total_spent") else v
           for k, v in wallet.items() if k != "entries"}
    out["entries"] = [(e["call_id"], e["kind"], micros_to_inr(e["amount"])) for e in wallet["entries"]]
    return out


def wallets_shown(url: str, cwd, emails: list[str], pool: ThreadPoolExecutor) -> dict:
    """`aicredits wallet show --email E --json` of every wallet (the drill's check, docs/operations.md);
    the commands run at once, each its own process."""
    out = {}
    procs = pool.map(lambda email: aicredits(url, cwd, "wallet", "show", "--email", email, "--json"), emails)
    for email, proc in zip(emails, procs, strict=True):
        assert proc.returncode == 0, proc.stderr
        shown_ = json.loads(proc.stdout)
        shown_["entries"] = [(e["call_id"], e["kind"], e["amount"]) for e in shown_["entries"]]
        out[email] = shown_
    return out


def call(base_url: str, key: str) -> None:
    r = HTTP.post(base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                   json={"model": "demo/echo", "messages": [{"role": "user", "content": "back me up"}]})
    assert r.status_code == 200, r.text


def test_restore_drill(db_url, make_pg_db, start_gateway, tmp_path):
    gw = start_gateway(db_url=db_url)
    emails = [f"drill-{i}@example.com" for i in range(2)]
    keys = [gw.create_key(credits="25", email=e)["key"] for e in emails]
    for key in keys * 3:
        call(gw.base_url, key)
    before = wallets(db_url, emails)
    assert all(w["total_spent"] > 0 for w in before.values())

    # back up while the gateway serves, restore into a new database (docs/operations.md)
    if db_url.startswith("sqlite"):
        live = db_url.removeprefix("sqlite:///")
        backup, restored_file = tmp_path / "aicredits-backup.db", tmp_path / "restored" / "aicredits.db"
        run("sqlite3", live, f".backup '{backup}'")
        restored_file.parent.mkdir()
        run("sqlite3", str(restored_file), f".restore '{backup}'")
        restored = f"sqlite:///{restored_file}"
    else:
        dump = tmp_path / "aicredits.dump"
        run("pg_dump", "--format=custom", f"--file={dump}", f"--dbname={db_url}")
        restored = make_pg_db()
        run("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", str(dump))

    # the drill's commands on the restored database, at once (each a process of its own)
    with ThreadPoolExecutor(len(emails) + 1) as pool:
        verifying = pool.submit(aicredits, restored, tmp_path, "ledger", "verify")
        assert wallets_shown(restored, tmp_path, emails, pool) == {e: shown(w) for e, w in before.items()}
        verify = verifying.result()
    assert verify.returncode == 0 and verify.stdout.strip() == "ledger verify: ok", verify.stderr
    assert wallets(restored, emails) == before     # the ledger entries too

    # the restored database serves the same keys, and charges them
    gw2 = GatewayProcess(restored, tmp_path / "gw2", {"AICREDITS_RETRIES": "0"}).start()
    try:
        call(gw2.base_url, keys[0])
        assert wallets(restored, emails[:1])[emails[0]]["total_spent"] > before[emails[0]]["total_spent"]
    finally:
        gw2.stop()
    assert admin(restored, lambda a: a.verify()) == []
