"""The CLI contract (docs/cli.md): in this process through typer's CliRunner, and as a real
subprocess (`python -m aicredits ...`, process=True) for the entry point, `serve`, and at least one
command of each family."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.cli.conftest import migrate_now
from tests.cli.invoke import in_process
from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario

KEY_RE = re.compile(r"^sk-[0-9a-f]{64}$")
ANY_SECRET = re.compile(r"sk-[0-9a-f]{64}")
COMMANDS = ("serve", "keys", "users", "wallet", "usage", "models", "ledger", "migrate")


def _env(url: str, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICREDITS_")}
    env.update({"AICREDITS_DATABASE_URL": url, "COLUMNS": "80"})
    env.update(extra or {})
    return env


def run(url: str, *args: str, cwd: Path | None = None, env: dict | None = None,
        process: bool = False) -> subprocess.CompletedProcess:
    """`aicredits ARGS` in this process (tests/cli/invoke.py), or with process=True as a real
    subprocess (`python -m aicredits`); the answer is the same either way."""
    if not process:
        return in_process(args, _env(url, env), cwd)
    return subprocess.run([sys.executable, "-m", "aicredits", *args], env=_env(url, env), cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=60)


def ok(url: str, *args: str, **kw) -> subprocess.CompletedProcess:
    proc = run(url, *args, **kw)
    assert proc.returncode == 0, f"aicredits {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def one_json(proc: subprocess.CompletedProcess):
    """stdout is exactly one JSON document (one line) and nothing else."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line, got:\n{proc.stdout}"
    return json.loads(lines[0])


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@pytest.fixture
def url(tmp_path, new_db) -> str:
    """A migrated, empty database (only serve and migrate create one)."""
    return new_db(tmp_path / "aicredits.db")


def sql(url: str, statement: str, params: tuple = ()) -> list:
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


# ---------------------------------------------------------------------------- keys create
def test_keys_create_json_prints_one_object(url):
    out = one_json(ok(url, "keys", "create", "--credits", "500", "--json", process=True))
    assert isinstance(out, dict)
    assert KEY_RE.fullmatch(out["key"])
    assert isinstance(out["id"], str) and out["id"]
    assert is_number(out["balance"]) and out["balance"] == 500
    # the key is the default account's, and it starts with the granted credits
    w = one_json(ok(url, "wallet", "show", "--json"))
    assert w["balance"] == 500 and w["total_added"] == 500


def test_keys_create_with_email_creates_the_account(url):
    email = "new-user@example.com"
    out = one_json(ok(url, "keys", "create", "--email", email, "--credits", "7", "--json"))
    assert out["balance"] == 7
    w = one_json(ok(url, "wallet", "show", "--email", email, "--json"))
    assert w["account"] == email
    assert w["balance"] == 7 and w["total_added"] == 7
    # a second key on the same account adds to the same wallet
    again = one_json(ok(url, "keys", "create", "--email", email, "--credits", "3", "--json"))
    assert again["balance"] == 10 and again["id"] != out["id"] and again["key"] != out["key"]
    assert sql(url, "SELECT password_hash FROM accounts WHERE email = ?", (email,)) == [(None,)]


def test_keys_create_without_credits_has_zero_balance(url):
    out = one_json(ok(url, "keys", "create", "--email", "z@example.com", "--json"))
    assert KEY_RE.fullmatch(out["key"]) and out["balance"] == 0 and is_number(out["balance"])


def test_credits_take_up_to_six_decimals(url):
    out = one_json(ok(url, "keys", "create", "--email", "d@example.com", "--credits", "0.123456", "--json"))
    assert out["balance"] == 0.123456
    assert sql(url, "SELECT w.balance FROM wallets w JOIN accounts a ON a.id = w.account_id "
                    "WHERE a.email = ?", ("d@example.com",)) == [(123_456,)]

    bad = run(url, "keys", "create", "--email", "e@example.com", "--credits", "0.1234567", "--json")
    assert bad.returncode != 0
    assert bad.stdout.strip() == ""
    assert "--credits" in bad.stderr and "6 decimal" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert sql(url, "SELECT COUNT(*) FROM accounts WHERE email = ?", ("e@example.com",)) == [(0,)]

    for junk in ("abc", "1e", ""):
        proc = run(url, "keys", "create", "--credits", junk, "--json")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and "--credits" in proc.stderr


def test_keys_create_limit(url):
    out = one_json(ok(url, "keys", "create", "--email", "l@example.com", "--credits", "10",
                      "--limit", "2.5", "--json"))
    assert out["limit"] == 2.5
    rows = one_json(ok(url, "keys", "list", "--json"))
    row = next(r for r in rows if r["id"] == out["id"])
    assert row["limit"] == 2.5 and is_number(row["limit"])
    assert sql(url, "SELECT limit_micros FROM api_keys WHERE id = ?", (out["id"],)) == [(2_500_000,)]

    bad = run(url, "keys", "create", "--limit", "1.0000001", "--json")
    assert bad.returncode != 0 and "--limit" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------- keys list / revoke
def test_keys_list_never_prints_a_secret(url):
    made = [one_json(ok(url, "keys", "create", "--email", f"k{i}@example.com", "--credits", "1", "--json"))
            for i in range(2)]
    for args in (("keys", "list"), ("keys", "list", "--json")):
        proc = ok(url, *args)
        text = proc.stdout + proc.stderr
        for m in made:
            assert m["key"] not in text
            assert m["key"][3:] not in text
        assert not ANY_SECRET.search(text)
    rows = one_json(ok(url, "keys", "list", "--json"))
    assert {m["id"] for m in made} <= {r["id"] for r in rows}
    assert all("key" not in r and "key_hash" not in r for r in rows)


def test_keys_list_table_prints_whole_key_ids(url):
    """`keys revoke ID` takes the id printed by `keys list` (docs/cli.md): the table must not cut it."""
    made = one_json(ok(url, "keys", "create", "--email", "a-rather-long-address@example.com", "--json"))
    proc = ok(url, "keys", "list")   # COLUMNS=80, as in a usual terminal
    assert made["id"] in proc.stdout, f"the key id {made['id']} is not printed whole:\n{proc.stdout}"


def test_keys_revoke(url):
    made = one_json(ok(url, "keys", "create", "--email", "r@example.com", "--credits", "1", "--json"))
    proc = ok(url, "keys", "revoke", made["id"])
    assert made["id"] in proc.stdout
    row = next(r for r in one_json(ok(url, "keys", "list", "--json")) if r["id"] == made["id"])
    assert row["revoked"] is True
    assert sql(url, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = ?", (made["id"],)) == [(1,)]
    again = ok(url, "keys", "revoke", made["id"])      # idempotent
    assert "already" in again.stdout
    unknown = run(url, "keys", "revoke", "key_doesnotexist")
    assert unknown.returncode != 0 and "key_doesnotexist" in unknown.stderr and "Traceback" not in unknown.stderr


# ---------------------------------------------------------------------------- users / wallet / usage / models
def test_users_create_sets_an_argon2id_password(url):
    proc = ok(url, "users", "create", "--email", "person@example.com", "--password", "s3cret-pass", process=True)
    assert "person@example.com" in proc.stdout
    assert "s3cret-pass" not in proc.stdout + proc.stderr
    [(hashed,)] = sql(url, "SELECT password_hash FROM accounts WHERE email = ?", ("person@example.com",))
    assert hashed.startswith("$argon2id$")
    from argon2 import PasswordHasher
    assert PasswordHasher().verify(hashed, "s3cret-pass")
    # an account made by `keys create --email` gets its password later the same way
    ok(url, "keys", "create", "--email", "later@example.com", "--json")
    ok(url, "users", "create", "--email", "later@example.com", "--password", "another-one")
    [(hashed,)] = sql(url, "SELECT password_hash FROM accounts WHERE email = ?", ("later@example.com",))
    assert PasswordHasher().verify(hashed, "another-one")
    assert sql(url, "SELECT COUNT(*) FROM accounts WHERE email = ?", ("later@example.com",)) == [(1,)]


def test_wallet_grant_and_show(url):
    email = "w@example.com"
    ok(url, "users", "create", "--email", email, "--password", "pw-pw-pw-pw")
    proc = ok(url, "wallet", "grant", "12.5", "--email", email)
    assert "12.5" in proc.stdout
    w = one_json(ok(url, "wallet", "show", "--email", email, "--json"))
    assert w["account"] == email
    for field in ("balance", "held", "available", "total_added", "total_spent"):
        assert is_number(w[field]), field
    assert (w["balance"], w["available"], w["total_added"], w["total_spent"], w["held"]) == (12.5, 12.5, 12.5, 0, 0)
    ok(url, "wallet", "grant", "0.000001", "--email", email)
    assert one_json(ok(url, "wallet", "show", "--email", email, "--json"))["balance"] == 12.500001
    rows = sql(url, "SELECT kind, amount, balance_after FROM ledger_entries l JOIN accounts a "
                    "ON a.id = l.account_id WHERE a.email = ? ORDER BY l.id", (email,))
    assert rows == [("grant", 12_500_000, 12_500_000), ("grant", 1, 12_500_001)]
    human = ok(url, "wallet", "show", "--email", email)
    assert "12.500001" in human.stdout

    for bad_args in (("wallet", "grant", "12.5", "--email", "nobody@example.com"),
                     ("wallet", "grant", "0.1234567", "--email", email),
                     ("wallet", "grant", "0", "--email", email),
                     ("wallet", "show", "--email", "nobody@example.com", "--json")):
        proc = run(url, *bad_args)
        assert proc.returncode != 0, bad_args
        assert proc.stderr.strip() and "Traceback" not in proc.stderr, bad_args
    assert one_json(ok(url, "wallet", "show", "--email", email, "--json"))["balance"] == 12.500001


def test_usage_json_on_an_empty_database(url):
    assert one_json(ok(url, "usage", "--json")) == []


def _record_call(url: str, key: str, charge: int) -> str:
    """One settled call through the hot-path store, as the gateway would record it."""
    import time
    from fractions import Fraction

    from aicredits.domain.keys import hash_key
    from aicredits.domain.reservation import plan_hold
    from aicredits.ports import HoldRequest, Settlement
    from aicredits.store.billing_sqlite import SqliteBilling

    async def go() -> str:
        store = SqliteBilling(url.removeprefix("sqlite:///"))
        try:
            auth = await store.find_key(hash_key(key))
            now = int(time.time() * 1000)
            call_id = uuid.uuid4().hex
            planner = lambda avail, head: plan_hold(available=avail, key_headroom=head,
                                                    prompt_cost=Fraction(0), output_price=Fraction(1000),
                                                    requested_max=100, model_cap=None)
            await store.reserve(HoldRequest(call_id, auth.account_id, auth.key_id, now, now + 60_000, planner))
            usage = {"call_id": call_id, "request_id": "req-" + call_id, "account_id": auth.account_id,
                     "key_id": auth.key_id, "model": "openai/gpt-4o-mini", "provider": "openai",
                     "deployment": "openai", "endpoint": "chat", "stream": False, "prompt_tokens": 19,
                     "completion_tokens": 9, "cache_read_tokens": 0, "cache_write_tokens": 0,
                     "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "units": 28, "latency_ms": 5,
                     "overhead_ms": 1, "status": 200, "cache": "bypass", "end_state": "completed",
                     "error": None, "created_at": now}
            await store.settle(Settlement(call_id, auth.account_id, auth.key_id, charge, usage))
            return call_id
        finally:
            await store.close()
    return asyncio.run(go())


def test_usage_json_lists_calls(url):
    made = one_json(ok(url, "keys", "create", "--email", "u@example.com", "--credits", "1", "--json"))
    call_id = _record_call(url, made["key"], 12_345)
    rows = one_json(ok(url, "usage", "--json"))
    assert len(rows) == 1
    row = rows[0]
    assert row["call_id"] == call_id and row["model"] == "openai/gpt-4o-mini"
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (19, 9, 200)
    assert row["cost"] == 0.012345 and is_number(row["cost"])
    assert one_json(ok(url, "usage", "--json", "--email", "u@example.com"))[0]["call_id"] == call_id
    human = ok(url, "usage")
    assert "0.012345" in human.stdout
    assert ok(url, "ledger", "verify").returncode == 0


def test_models_list(url):
    rows = one_json(ok(url, "models", "list", "--json", process=True))
    by_id = {r["id"]: r for r in rows}
    mini = by_id["openai/gpt-4o-mini"]
    assert mini["input_cost_per_1m"] == 0.15 and mini["output_cost_per_1m"] == 0.6
    assert mini["currency"] == "USD"
    assert "demo/echo" in by_id
    human = ok(url, "models", "list")
    assert "gpt-4o-mini" in human.stdout


# ---------------------------------------------------------------------------- ledger verify / migrate / help
def test_ledger_verify_finds_a_corrupted_wallet(url):
    assert ok(url, "ledger", "verify").returncode == 0       # an empty database is healthy
    made = one_json(ok(url, "keys", "create", "--email", "v@example.com", "--credits", "5", "--json"))
    ok(url, "wallet", "grant", "1.5", "--email", "v@example.com")
    healthy = ok(url, "ledger", "verify")
    assert "ok" in healthy.stdout

    sql(url, "UPDATE wallets SET balance = balance + 1 WHERE account_id = "
             "(SELECT id FROM accounts WHERE email = ?)", ("v@example.com",))
    bad = run(url, "ledger", "verify")
    assert bad.returncode == 1
    text = bad.stdout + bad.stderr
    [(account_id,)] = sql(url, "SELECT id FROM accounts WHERE email = ?", ("v@example.com",))
    assert f"account {account_id}" in text and "6500001" in text and "6500000" in text
    assert made["key"] not in text

    sql(url, "UPDATE wallets SET balance = balance - 1")   # repaired: healthy again
    assert run(url, "ledger", "verify").returncode == 0
    sql(url, "UPDATE api_keys SET held = 42")               # a key's holds drifting is a problem too
    bad = run(url, "ledger", "verify")
    assert bad.returncode == 1 and made["id"] in bad.stdout + bad.stderr


def _db(url: str, statement: str) -> list:
    """Run one SQL statement on a SQLite or PostgreSQL database (as a tamperer would)."""
    from sqlalchemy import text

    from aicredits.store.db import make_engine

    async def go():
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement))
                return result.all() if result.returns_rows else []
        finally:
            await engine.dispose()
    return asyncio.run(go())


def test_ledger_verify_names_the_first_bad_row_of_each_check_and_exits_1(db_url):
    migrate_now(db_url)
    ok(db_url, "keys", "create", "--email", "chain@example.com", "--credits", "5", "--limit", "1", "--json")
    for amount in ("1.5", "2"):
        ok(db_url, "wallet", "grant", amount, "--email", "chain@example.com")
    assert ok(db_url, "ledger", "verify").stdout.strip() == "ledger verify: ok"
    [(account_id, key_id)] = _db(db_url, "SELECT account_id, id FROM api_keys")
    ids = [r[0] for r in _db(db_url, "SELECT id FROM ledger_entries ORDER BY id")]
    _db(db_url, f"UPDATE ledger_entries SET balance_after = 123 WHERE id = {ids[1]}")   # the middle entry
    _db(db_url, "UPDATE api_keys SET spent = 2000000")
    bad = run(db_url, "ledger", "verify")
    assert bad.returncode == 1 and "ok" not in bad.stdout
    assert bad.stderr.splitlines() == [
        (f"ledger chain: entry {ids[1]} (account {account_id}, grant): balance_after 123 != previous "
         "balance_after 5000000 + amount 1500000 = 6500000 (and 1 more)"),
        f"key spent: key {key_id} (account {account_id}): spent 2000000 != sum of its charges 0",
        f"key limit: key {key_id} (account {account_id}): spent 2000000 is above its limit 1000000",
        "ledger verify: 3 check(s) failed"]


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path}/new/aicredits.db"     # its directory is created too
    proc = ok(url, "migrate", process=True)
    assert f"{tmp_path}/new/aicredits.db" in proc.stdout and "newest migration" in proc.stdout
    tables = {r[0] for r in sql(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"accounts", "wallets", "ledger_entries", "api_keys", "holds", "usage_records"} <= tables
    ok(url, "keys", "create", "--credits", "1", "--json")
    ok(url, "migrate")
    assert one_json(ok(url, "wallet", "show", "--json"))["balance"] == 1


def test_help_lists_every_command(url):
    proc = ok(url, "--help", process=True)   # the entry point itself
    for cmd in COMMANDS:
        assert re.search(rf"\b{cmd}\b", proc.stdout), cmd
    for sub, words in ((("keys",), ("create", "list", "revoke")), (("wallet",), ("show", "grant")),
                       (("users",), ("create",)), (("models",), ("list",)), (("ledger",), ("verify",))):
        out = ok(url, *sub, "--help").stdout
        for w in words:
            assert re.search(rf"\b{w}\b", out), (sub, w)
    create = ok(url, "keys", "create", "--help").stdout
    for opt in ("--email", "--name", "--credits", "--limit", "--json"):
        assert opt in create
    serve = ok(url, "serve", "--help").stdout
    for opt in ("--host", "--port", "--workers"):
        assert opt in serve


BAD_SETTINGS = {   # name -> (variables, TOML file text or None, what the one error line says)
    "unknown variable": ({"AICREDITS_STREAM_IDLE_TIMEOUTS": "5"}, None,
                         ("AICREDITS_STREAM_IDLE_TIMEOUTS (environment variable): unknown setting "
                         "(did you mean AICREDITS_STREAM_IDLE_TIMEOUT?)")),
    "unknown file key": ({}, "[gateway]\nmarkupp = 0.1\n", "{file}: [gateway] markupp: unknown key"),
    "negative timeout": ({"AICREDITS_UPSTREAM_TIMEOUT": "-1"}, None,
                         "AICREDITS_UPSTREAM_TIMEOUT (environment variable): input should be greater than 0, got '-1'"),
    "negative timeout in the file": ({}, "[providers.local]\nbase_url = 'http://127.0.0.1:9/v1'\ntimeout = -3\n",
                                     "{file}: [providers.local] timeout: input should be greater than 0, got -3"),
    "misspelt model price key": ({}, "[[models]]\nid = 'local/m'\ninput_cost_per_1M = 0.5\noutput_cost_per_1m = 1\n",
                                 ('{file}: [[models]] #1 (id "local/m") input_cost_per_1M: unknown key '
                                 "(did you mean input_cost_per_1m?)")),
    "bad value": ({"AICREDITS_MAX_BODY_BYTES": "40MB"}, None,
                  "AICREDITS_MAX_BODY_BYTES (environment variable): input should be a valid integer"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_bad_setting_stops_the_start_with_one_line_naming_it(tmp_path, monkeypatch, case, command):
    """`serve` as a real process for the first case; the other cases in this process, where
    getting past the settings (to bind, migrate and serve) fails the test instead."""
    variables, toml, says = BAD_SETTINGS[case]
    env = dict(variables)
    if toml is not None:
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(toml)
        env["AICREDITS_CONFIG"] = str(cfg)
        says = says.format(file=cfg)
    db = tmp_path / "aicredits.db"
    args = [command] + (["--port", "9"] if command == "serve" else [])
    process = command == "serve" and case == next(iter(BAD_SETTINGS))
    if command == "serve" and not process:
        def started(*args, **kw):
            raise AssertionError("serve went past its settings")
        monkeypatch.setattr("aicredits.cli.serve.run_server", started)
    proc = run(f"sqlite:///{db}", *args, env=env, process=process)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), proc.stderr
    assert proc.stdout == "" and not db.exists()      # nothing started, nothing migrated


def test_bad_database_url_is_a_clear_error(tmp_path):
    proc = run("mysql://nobody@localhost/db", "keys", "list")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stderr.strip()


# ---------------------------------------------------------------------------- PostgreSQL
def test_cli_on_postgresql(make_pg_db):
    url = make_pg_db()
    ok(url, "migrate")
    out = one_json(ok(url, "keys", "create", "--email", "pg@example.com", "--credits", "500",
                      "--limit", "0.5", "--json"))
    assert KEY_RE.fullmatch(out["key"]) and out["balance"] == 500 and out["limit"] == 0.5
    ok(url, "wallet", "grant", "12.5", "--email", "pg@example.com", process=True)
    w = one_json(ok(url, "wallet", "show", "--email", "pg@example.com", "--json"))
    assert (w["balance"], w["total_added"]) == (512.5, 512.5)
    ok(url, "users", "create", "--email", "pg@example.com", "--password", "pg-password")
    rows = one_json(ok(url, "keys", "list", "--json"))
    assert [r["id"] for r in rows] == [out["id"]]
    ok(url, "keys", "revoke", out["id"])
    assert one_json(ok(url, "keys", "list", "--json"))[0]["revoked"] is True
    assert one_json(ok(url, "usage", "--json")) == []
    assert ok(url, "ledger", "verify").returncode == 0

    async def corrupt():
        import asyncpg
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("UPDATE wallets SET balance = balance + 1")
        finally:
            await conn.close()
    asyncio.run(corrupt())
    bad = run(url, "ledger", "verify", process=True)
    assert bad.returncode == 1 and "balance" in bad.stdout + bad.stderr


# ---------------------------------------------------------------------------- with a gateway running
def test_keys_create_while_serving_the_same_sqlite_file(start_gateway, upstream):
    """A gateway process and the CLI on one SQLite file: `keys create` as a process of its own, the
    other commands from this test's process (another process than the gateway's all the same)."""
    gw = start_gateway()
    made = json.loads(gw.cli("keys", "create", "--email", f"live-{uuid.uuid4().hex[:6]}@example.com",
                             "--credits", "3", "--json").stdout)
    assert KEY_RE.fullmatch(made["key"]) and made["balance"] == 3
    upstream.enqueue(Scenario(content="live!", prompt_tokens=19, completion_tokens=9))
    client = openai.OpenAI(base_url=gw.v1, api_key=made["key"], max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    assert raw.parse().choices[0].message.content == "live!"
    want = expected_micros(gw.catalog()["openai/gpt-4o-mini"], 19, 9)
    credits = gw.credits(made["key"])
    assert round(credits["total_spent"] * 1_000_000) == want
    assert round(credits["balance"] * 1_000_000) == 3_000_000 - want

    assert ok(gw.db_url, "ledger", "verify", env=gw.env, cwd=gw.workdir).returncode == 0

    # a key revoked by the CLI is refused by the running gateway within a second
    ok(gw.db_url, "keys", "revoke", made["id"], env=gw.env, cwd=gw.workdir)
    import time
    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    rows = one_json(ok(gw.db_url, "usage", "--json", "--email", made["account"], env=gw.env, cwd=gw.workdir))
    assert rows[0]["model"] == "openai/gpt-4o-mini" and rows[0]["prompt_tokens"] == 19
    assert round(rows[0]["cost"] * 1_000_000) == want


# ---------------------------------------------------------------------------- first serve
def _parse_first_admin(text: str) -> dict:
    email = re.search(r"sign-in email:\s*(\S+)", text)
    password = re.search(r"password:\s*(\S+)", text)
    url = re.search(r"curl\s+(http://\S+/v1/chat/completions)", text)
    auth = re.search(r"-H\s+'Authorization: Bearer (sk-[0-9a-f]{64})'", text)
    body = re.search(r"-d\s+'(\{.*?\})'", text, re.DOTALL)
    assert email and password and url and auth and body, text
    return {"email": email.group(1), "password": password.group(1), "url": url.group(1),
            "key": auth.group(1), "body": json.loads(body.group(1))}


def test_first_serve_creates_the_admin_and_a_private_credentials_file(start_gateway):
    gw = start_gateway()      # an empty SQLite database in a fresh directory
    path = gw.workdir / "aicredits-first-admin.txt"
    assert path.exists(), f"no {path.name} next to the database; log:\n{gw.log()}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = _parse_first_admin(path.read_text())
    assert first["url"].startswith(gw.base_url)
    assert first["body"]["model"] == "demo/echo"

    db_url = gw.db_url
    [(role, hashed)] = sql(db_url, "SELECT role, password_hash FROM accounts WHERE email = ?", (first["email"],))
    assert role == "admin"
    from argon2 import PasswordHasher
    assert PasswordHasher().verify(hashed, first["password"])

    before = gw.credits(first["key"])
    assert before["balance"] > 0
    resp = httpx.post(first["url"], headers={"Authorization": f"Bearer {first['key']}",
                                             "Content-Type": "application/json"},
                      json=first["body"], timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"]
    cost = resp.headers["x-aicredits-cost"]
    assert float(cost) > 0
    after = gw.credits(first["key"])
    assert after["total_spent"] == pytest.approx(float(cost), abs=1e-9)
    assert after["balance"] == pytest.approx(before["balance"] - float(cost), abs=1e-9)

    log = gw.log()
    assert first["key"] not in log and first["key"][3:] not in log
    assert first["password"] not in log
    assert "aicredits-first-admin.txt" in log     # the log says where the credentials are

    # a second start on the same database creates no second admin and rewrites nothing
    mtime = path.stat().st_mtime_ns
    again = start_gateway(db_url=db_url)
    assert sql(db_url, "SELECT COUNT(*) FROM accounts WHERE role = 'admin'") == [(1,)]
    assert path.stat().st_mtime_ns == mtime
    assert not (again.workdir / "aicredits-first-admin.txt").exists()
    again.stop()


def _serve_refused(tmp_path: Path) -> subprocess.CompletedProcess:
    """`aicredits serve` on an empty database in tmp_path whose credentials file cannot be made
    (stdout is a pipe, not a terminal): it must stop by itself."""
    from tests.conftest import free_port
    url = f"sqlite:///{tmp_path}/aicredits.db"
    proc = subprocess.run([sys.executable, "-m", "aicredits", "serve", "--port", str(free_port())],
                          env=_env(url), cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sql(url, "SELECT COUNT(*) FROM accounts") == [(0,)]     # no admin nobody can sign in as
    assert not ANY_SECRET.search(proc.stdout + proc.stderr) and "password:" not in proc.stdout + proc.stderr
    return proc


def _first_start(db: Path) -> dict:
    """What `serve` does before it serves on an empty database (cli/serve.py run_server: the
    credentials file's name beside the database, migrate, the first admin and its private file),
    in this process: the file rules below are the ones of _create_private, which the real process
    of test_first_serve_creates_the_admin_and_a_private_credentials_file goes through too."""
    from aicredits.cli import serve
    from aicredits.settings import load_settings

    settings = load_settings(_env(f"sqlite:///{db}"))
    first = asyncio.run(serve._prepare(settings, serve._credentials_path(settings)))
    assert first is not None and first["fd"] is not None
    serve._announce(first, "127.0.0.1", 8000)
    return first


def test_an_existing_credentials_file_is_left_alone_and_the_next_name_is_used(tmp_path, caplog):
    """A fresh database beside an older first start's file (or someone else's): that file is never
    opened; the new credentials go to a new private file, and the log names it."""
    path = tmp_path / "aicredits-first-admin.txt"
    path.write_text("someone else's file\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="aicredits"):
        _first_start(tmp_path / "aicredits.db")
    assert path.read_text() == "someone else's file\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    second = tmp_path / "aicredits-first-admin.2.txt"
    assert stat.S_IMODE(second.stat().st_mode) == 0o600
    first = _parse_first_admin(second.read_text())
    url = f"sqlite:///{tmp_path}/aicredits.db"
    assert one_json(ok(url, "wallet", "show", "--email", first["email"], "--json"))["balance"] == 100
    assert sql(url, "SELECT COUNT(*) FROM api_keys") == [(1,)]
    assert "aicredits-first-admin.2.txt" in caplog.text


def test_first_serve_refuses_when_every_credentials_name_is_taken(tmp_path):
    from aicredits.cli.serve import CREDENTIALS_TRIES
    for n in range(1, CREDENTIALS_TRIES + 1):
        name = "aicredits-first-admin.txt" if n == 1 else f"aicredits-first-admin.{n}.txt"
        (tmp_path / name).write_text("taken\n")
    proc = _serve_refused(tmp_path)
    assert "numbered names beside it already exist" in proc.stderr
    assert "no admin account was created" in proc.stderr and "nothing secret was written" in proc.stderr
    assert {p.read_text() for p in tmp_path.glob("aicredits-first-admin*")} == {"taken\n"}


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_symlinked_credentials_name_is_never_followed(tmp_path, target_exists):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "target.txt"
    if target_exists:
        target.write_text("")
        target.chmod(0o644)
    path = tmp_path / "aicredits-first-admin.txt"
    path.symlink_to(target)
    _first_start(tmp_path / "aicredits.db")
    assert path.is_symlink()
    if target_exists:   # the target is untouched: still empty, still 0644
        assert target.read_text() == "" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in elsewhere.iterdir()) == (["target.txt"] if target_exists else [])
    second = tmp_path / "aicredits-first-admin.2.txt"
    assert not second.is_symlink() and stat.S_IMODE(second.stat().st_mode) == 0o600
    assert _parse_first_admin(second.read_text())["email"]


# ---------------------------------------------------------------------------- rate limits
def test_keys_create_with_rate_limits(url):
    out = one_json(ok(url, "keys", "create", "--email", "rl@example.com", "--credits", "1", "--rpm", "60",
                      "--tpm", "90000", "--json"))
    assert (out["rpm"], out["tpm"]) == (60, 90000) and KEY_RE.fullmatch(out["key"])
    plain = one_json(ok(url, "keys", "create", "--email", "rl@example.com", "--json"))
    assert (plain["rpm"], plain["tpm"]) == (None, None)        # unlimited by default
    rows = {r["id"]: r for r in one_json(ok(url, "keys", "list", "--json"))}
    assert (rows[out["id"]]["rpm"], rows[out["id"]]["tpm"]) == (60, 90000)
    assert (rows[plain["id"]]["rpm"], rows[plain["id"]]["tpm"]) == (None, None)
    assert sql(url, "SELECT rpm, tpm FROM api_keys WHERE id = ?", (out["id"],)) == [(60, 90000)]
    human = ok(url, "keys", "create", "--email", "rl@example.com", "--rpm", "5").stdout
    assert "rpm 5, tpm unlimited" in human
    table_out = ok(url, "keys", "list", env={"COLUMNS": "200"}).stdout
    assert "rpm" in table_out and "tpm" in table_out and "90000" in table_out


@pytest.mark.parametrize("flag, value", [("--rpm", "0"), ("--rpm", "-3"), ("--tpm", "abc"), ("--tpm", "1.5"),
                                         ("--rpm", "1000000001")])
def test_keys_create_refuses_bad_rate_limits(url, flag, value):
    ok(url, "migrate")
    proc = run(url, "keys", "create", "--email", "bad@example.com", flag, value, "--json")
    assert proc.returncode == 2 and proc.stdout.strip() == ""
    assert flag in proc.stderr and "Traceback" not in proc.stderr
    assert sql(url, "SELECT COUNT(*) FROM api_keys") == [(0,)]


def test_keys_limit_sets_keeps_and_clears(url):
    made = one_json(ok(url, "keys", "create", "--email", "lim@example.com", "--json"))
    assert one_json(ok(url, "keys", "limit", made["id"], "--rpm", "30", "--tpm", "5000", "--json")) == \
        {"id": made["id"], "rpm": 30, "tpm": 5000, "expires_at": None, "models": None}
    # an option left out is kept
    assert one_json(ok(url, "keys", "limit", made["id"], "--rpm", "10", "--json"))["tpm"] == 5000
    proc = ok(url, "keys", "limit", made["id"], "--tpm", "none")
    assert f"{made['id']}: rpm 10, tpm unlimited" in proc.stdout
    ok(url, "keys", "limit", made["id"], "--rpm", "NONE")
    assert sql(url, "SELECT rpm, tpm FROM api_keys WHERE id = ?", (made["id"],)) == [(None, None)]


def test_keys_limit_errors(url):
    made = one_json(ok(url, "keys", "create", "--email", "lim2@example.com", "--json"))
    for args in ((made["id"],), (made["id"], "--rpm", "0"), (made["id"], "--tpm", "lots"),
                 (made["id"], "--rpm", "-1")):
        proc = run(url, "keys", "limit", *args)
        assert proc.returncode == 2 and proc.stderr.strip() and "Traceback" not in proc.stderr, args
    unknown = run(url, "keys", "limit", "key_nope", "--rpm", "5")
    assert unknown.returncode == 1 and "no key with id key_nope" in unknown.stderr
    assert sql(url, "SELECT rpm, tpm FROM api_keys WHERE id = ?", (made["id"],)) == [(None, None)]


def test_rate_limit_help_texts(url):
    assert re.search(r"\blimit\b", ok(url, "keys", "--help").stdout)
    create = ok(url, "keys", "create", "--help", env={"COLUMNS": "200"}).stdout
    assert "--rpm" in create and "--tpm" in create and "Requests per minute" in create
    assert "Tokens per minute" in create and "429" in create
    limit = ok(url, "keys", "limit", "--help", env={"COLUMNS": "200"}).stdout
    assert "--rpm" in limit and "--tpm" in limit and "'none' removes it" in limit


def test_migrate_upgrades_a_0001_database_with_keys(tmp_path):
    """An existing database at migration 0001 with a key in it: `aicredits migrate` adds the rate
    limit columns, the key keeps working unlimited, and `keys limit` then sets its limits."""
    from alembic import command

    from aicredits.store.db import _alembic_config

    url = f"sqlite:///{tmp_path}/aicredits.db"
    cfg = _alembic_config(url)
    command.upgrade(cfg, "0001")     # env.py opens its own engine when given no connection
    assert "rpm" not in {r[1] for r in sql(url, "PRAGMA table_info(api_keys)")}
    sql(url, "INSERT INTO accounts (id, email, name, role, created_at) VALUES (1, 'old@example.com', '', 'user', 1)")
    sql(url, "INSERT INTO wallets (account_id, balance, held, total_added, total_spent, updated_at) "
             "VALUES (1, 3000000, 0, 3000000, 0, 1)")
    sql(url, "INSERT INTO ledger_entries (account_id, kind, amount, balance_after, note, created_at) "
             "VALUES (1, 'grant', 3000000, 3000000, 'old', 1)")
    sql(url, "INSERT INTO api_keys (id, account_id, name, key_hash, display, spent, held, created_at) "
             "VALUES ('key_old', 1, 'old', ?, 'sk-…', 0, 0, 1)", ("ab" * 32,))
    ok(url, "migrate")
    from alembic.script import ScriptDirectory
    assert sql(url, "SELECT version_num FROM alembic_version") == [
        (ScriptDirectory.from_config(cfg).get_current_head(),)]
    (row,) = one_json(ok(url, "keys", "list", "--json"))
    assert (row["id"], row["rpm"], row["tpm"]) == ("key_old", None, None)
    assert one_json(ok(url, "wallet", "show", "--email", "old@example.com", "--json"))["balance"] == 3
    ok(url, "keys", "limit", "key_old", "--rpm", "3")
    assert ok(url, "ledger", "verify").returncode == 0
