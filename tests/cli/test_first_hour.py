"""A newcomer's first hour with the CLI and the configuration: the CLI finds the server's
database from any directory and never creates one by reading; start-up mistakes are one line;
defaults that fit a fresh install; output that stays readable when piped; `make run`.

Most commands run in this process (typer's CliRunner: stdin and stdout are not terminals, as
in a pipe); `serve` runs as a real process where exit codes, the log and a bound port matter."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aicredits.cli.main import app
from aicredits.settings import load_settings
from tests.cli.conftest import migrate_now
from tests.cli.invoke import built_once, in_process
from tests.cli.test_cli import _env, _record_call, sql
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None):
    """One command in this process; AICREDITS_DATABASE_URL unset unless env gives it."""
    base = {k: None for k in os.environ if k.startswith("AICREDITS_")}
    with built_once():
        return CliRunner().invoke(app, list(args), env={**base, **(env or {})})


def ok(*args: str, env: dict | None = None):
    res = cli(*args, env=env)
    assert res.exit_code == 0, f"aicredits {' '.join(args)} exited {res.exit_code}:\n{res.output}"
    return res


# ---------------------------------------------------------------------------- 1. which database
def test_one_rule_for_the_database_everywhere(tmp_path):
    home = tmp_path / "home"
    assert load_settings({"HOME": str(home)}).database_url == \
        f"sqlite:///{home}/.local/share/aicredits/aicredits.db"
    assert load_settings({"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "data")}).database_url == \
        f"sqlite:///{tmp_path}/data/aicredits/aicredits.db"
    state = load_settings({"HOME": str(home), "AICREDITS_STATE_DIR": str(tmp_path / "state")})
    assert state.database_url == f"sqlite:///{tmp_path}/state/aicredits.db"
    assert state.journal_dir == tmp_path / "state" / "settle-journal"
    given = load_settings({"HOME": str(home), "AICREDITS_DATABASE_URL": "sqlite:////srv/x.db"})
    assert (given.database_url, given.database_from) == ("sqlite:////srv/x.db", "AICREDITS_DATABASE_URL")


def test_the_cli_finds_the_default_database_from_any_directory(tmp_path, monkeypatch):
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": None}
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(first)
    ok("migrate", env=env)
    made = json.loads(ok("keys", "create", "--email", "a@example.in", "--credits", "3", "--json", env=env).stdout)
    monkeypatch.chdir(elsewhere)
    assert [r["id"] for r in json.loads(ok("keys", "list", "--json", env=env).stdout)] == [made["id"]]
    ok("wallet", "grant", "2", "--email", "a@example.in", env=env)
    assert json.loads(ok("wallet", "show", "--json", env=env).stdout)["balance"] == 5
    assert list(first.iterdir()) == [] and list(elsewhere.iterdir()) == []
    assert (tmp_path / "home/.local/share/aicredits/aicredits.db").exists()


def test_help_states_the_database_rule_and_every_database_command_has_the_option():
    top = " ".join(ok("--help").stdout.split())
    assert "--database URL, else AICREDITS_DATABASE_URL, else aicredits.db in the state directory" in top
    for args in (["serve"], ["migrate"], ["keys", "list"], ["keys", "create"], ["wallet", "show"], ["usage"],
                 ["users", "create"], ["users", "reset-link"], ["ledger", "verify"], ["admin-keys", "list"],
                 ["cache", "stats"]):
        assert "--database" in ok(*args, "--help", env={"COLUMNS": "200"}).stdout, args


def test_an_old_default_database_in_the_working_directory_is_not_silently_replaced(tmp_path, monkeypatch):
    """Before the state directory, the default was ./aicredits.db: with one here and none at the
    new default, serve/migrate create nothing new and say how to keep using it."""
    monkeypatch.chdir(tmp_path)
    migrate_now(f"sqlite:///{tmp_path}/aicredits.db")
    before = (tmp_path / "aicredits.db").read_bytes()
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": None}
    new = tmp_path / "home/.local/share/aicredits/aicredits.db"
    for args in (("migrate",), ("keys", "list")):
        res = cli(*args, env=env)
        assert res.exit_code == 1
        assert res.stderr.strip() == (
            f"error: {tmp_path}/aicredits.db exists, but the default database is now {new} (the same from any "
            f"directory) and does not exist yet. Keep using yours: move it there (mkdir -p {new.parent} && mv "
            f"{tmp_path}/aicredits.db {new}), or set AICREDITS_DATABASE_URL=sqlite:///{tmp_path}/aicredits.db. "
            "Nothing was created.")
    assert not (tmp_path / "home").exists() and (tmp_path / "aicredits.db").read_bytes() == before
    ok("keys", "list", env={**env, "AICREDITS_DATABASE_URL": f"sqlite:///{tmp_path}/aicredits.db"})


READERS = [("keys", "list"), ("wallet", "show"), ("usage",), ("ledger", "verify"), ("admin-keys", "list"),
           ("cache", "stats"), ("users", "reset-link", "a@example.in"),
           ("keys", "create", "--email", "a@example.in"), ("wallet", "grant", "1", "--email", "a@example.in")]


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_commands_other_than_serve_and_migrate_never_create_a_database(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere" / "aicredits.db"
    res = cli(*args, "--database", f"sqlite:///{missing}")
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [res.stderr.strip()] and "Traceback" not in res.output
    assert f"the SQLite database {missing} (from --database) does not exist" in res.stderr
    assert "--database URL or AICREDITS_DATABASE_URL" in res.stderr and "aicredits serve" in res.stderr
    assert not missing.parent.exists() and list(tmp_path.iterdir()) == []
    # without any setting: the default database is named as such
    res = cli(*args, env={"HOME": str(tmp_path / "h"), "XDG_DATA_HOME": None})
    assert res.exit_code == 1 and f"{tmp_path}/h/.local/share/aicredits/aicredits.db (the default location)" \
        in res.stderr
    assert not (tmp_path / "h").exists()


def test_a_missing_postgresql_database_says_how_to_create_it(pg_server, tmp_path):
    name = "aicredits_missing_" + uuid.uuid4().hex[:8]
    url = pg_server.rsplit("/", 1)[0] + "/" + name
    res = cli("keys", "list", env={"AICREDITS_DATABASE_URL": url})
    assert res.exit_code == 1 and "Traceback" not in res.output
    line = res.stderr.strip()
    assert "\n" not in line and "(from AICREDITS_DATABASE_URL)" in line
    assert f'the PostgreSQL database "{name}" does not exist' in line
    assert "createdb -h 127.0.0.1 -p 5432" in line and f"CREATE DATABASE \"{name}\"" in line
    # the same line, no traceback: migrate in this process, serve as a real start-up
    for command in (["migrate"], ["serve", "--port", str(free_port())]):
        if command[0] == "serve":
            proc = subprocess.run([sys.executable, "-m", "aicredits", *command], env=_env(url), cwd=tmp_path,
                                  capture_output=True, text=True, timeout=60, check=False)
        else:
            proc = in_process(command, _env(url), tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: {line.removeprefix('error: ')}"], proc.stderr


# ---------------------------------------------------------------------------- 3. users create
def test_users_create_without_a_password_off_a_terminal_creates_nothing(tmp_path, new_db):
    url = new_db(tmp_path / "aicredits.db")
    res = cli("users", "create", "--email", "nopass@example.in", "--database", url)
    assert res.exit_code == 2 and "--password is required when stdin is not a terminal" in res.stderr
    assert "Nothing was created" in res.stderr
    assert sql(url, "SELECT COUNT(*) FROM accounts") == [(0,)]
    ok("users", "create", "--email", "nopass@example.in", "--password", "a long password", "--database", url)
    assert sql(url, "SELECT password_hash IS NOT NULL FROM accounts") == [(1,)]


# ---------------------------------------------------------------------------- 4. defaults and output
def test_wallet_show_without_email_on_a_fresh_install(tmp_path, new_db):
    url = new_db(tmp_path / "aicredits.db")
    db = ["--database", url]
    none = cli("wallet", "show", *db)
    assert none.exit_code == 1 and "no accounts yet" in none.stderr
    ok("users", "create", "--email", "admin@aicredits.local", "--admin", "--password", "long password", *db)
    ok("wallet", "grant", "100", "--email", "admin@aicredits.local", *db)
    only = json.loads(ok("wallet", "show", "--json", *db).stdout)      # the only account
    assert (only["account"], only["balance"]) == ("admin@aicredits.local", 100)
    ok("users", "create", "--email", "second@example.in", "--password", "long password", *db)
    two = cli("wallet", "show", *db)
    assert two.exit_code == 1
    assert two.stderr.strip() == ("error: 2 accounts; choose one with --email: admin@aicredits.local, "
                                  "second@example.in")
    ok("keys", "create", "--credits", "7", *db)             # `keys create` without --email: default@
    assert json.loads(ok("wallet", "show", "--json", *db).stdout)["account"] == "default@aicredits.local"


def test_wallet_show_json_has_the_entries_the_table_shows(tmp_path, new_db):
    url = new_db(tmp_path / "aicredits.db")
    db = ["--database", url]
    ok("users", "create", "--email", "w@example.in", "--password", "long password", *db)
    ok("wallet", "grant", "12.5", "--email", "w@example.in", "--note", "welcome", *db)
    ok("wallet", "grant", "0.000001", "--email", "w@example.in", *db)
    doc = json.loads(ok("wallet", "show", "--email", "w@example.in", "--json", *db).stdout)
    assert [(e["kind"], e["amount"], e["balance_after"], e["note"]) for e in doc["entries"]] == [
        ("grant", 0.000001, 12.500001, "admin grant"), ("grant", 12.5, 12.5, "welcome")]
    assert all(isinstance(e["id"], int) and isinstance(e["created_at"], int) for e in doc["entries"])
    text = ok("wallet", "show", "--email", "w@example.in", *db).stdout
    for e in doc["entries"]:
        assert re.search(rf"^\s*{e['id']}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\s+grant\s", text, re.MULTILINE), text


def test_usage_without_email_shows_account_key_and_time(tmp_path, new_db):
    url = new_db(tmp_path / "aicredits.db")
    db = ["--database", url]
    keys = [json.loads(ok("keys", "create", "--email", email, "--credits", "1", "--json", *db).stdout)
            for email in ("first-customer@example.in", "second-customer@example.in")]
    before = int(time.time())
    for k in keys:
        _record_call(url, k["key"], 1_000)
    rows = json.loads(ok("usage", "--json", *db).stdout)
    assert [(r["account"], r["key_id"]) for r in rows] == [
        ("second-customer@example.in", keys[1]["id"]), ("first-customer@example.in", keys[0]["id"])]
    lines = ok("usage", *db).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["time (UTC)", "account", "key", "model", "prompt", "completion",
                                              "cost INR", "ms", "status", "end", "request"]
    assert len(lines) == 4                                        # header, rule, one line per call
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(before))
    for line, k in zip(lines[2:], reversed(keys), strict=True):
        assert line.startswith(stamp[:13]) and k["account"] in line and k["id"] in line and "0.001000" in line


def test_tables_are_plain_and_unwrapped_when_piped(tmp_path, new_db):
    url = new_db(tmp_path / "aicredits.db")
    db = ["--database", url]
    email = "a-rather-long-customer-address-for-billing@example-company.co.in"
    made = json.loads(ok("keys", "create", "--email", email, "--credits", "1234567.891234", "--limit",
                         "99999.123456", "--json", *db).stdout)
    out = ok("keys", "list", *db).stdout
    lines = out.splitlines()
    assert len(lines) == 3 and not re.search(r"[│┃━─┏└]", out)      # header, rule, the key: no box, no wrap
    assert made["id"] in lines[2] and email in lines[2] and "99999.123456" in lines[2]
    assert lines[1].replace(" ", "") == "-" * len(lines[1].replace(" ", ""))
    # columns line up: each header starts where its values start
    assert lines[2].index(email) == lines[0].index("account")


# ---------------------------------------------------------------------------- 2. start-up mistakes
BAD = {   # variables, TOML text or None, the start of the one error line
    "log level": ({"AICREDITS_LOG_LEVEL": "verbose"}, None, ("AICREDITS_LOG_LEVEL (environment variable): "
                  "input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', got 'VERBOSE'")),
    "redis url": ({"AICREDITS_REDIS_URL": "http://127.0.0.1:6379"}, None,
                  "AICREDITS_REDIS_URL (environment variable): must be a redis://, rediss:// or unix:// URL"),
    "markup": ({"AICREDITS_MARKUP": "abc"}, None,
               "AICREDITS_MARKUP (environment variable): must be a decimal number, got 'abc'"),
    "log format": ({"AICREDITS_LOG_FORMAT": "xml"}, None,
                   "AICREDITS_LOG_FORMAT (environment variable): input should be 'auto', 'json' or 'text'"),
    "catalog price": ({}, "[[models]]\nid = 'local/m'\ninput_cost_per_1m = 'cheap'\noutput_cost_per_1m = 1\n",
                      ('{file}: [[models]] #1 (id "local/m") input_cost_per_1m: must be a price (a number), '
                      "got 'cheap'")),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_start_up_mistakes_are_one_line_naming_the_setting(tmp_path, monkeypatch, case, command):
    """`serve` as a real start-up for the first case; the other cases in this process, where getting
    past the settings (to bind, migrate and serve) fails the test instead."""
    variables, toml, says = BAD[case]
    env = {"HOME": str(tmp_path), **variables}
    if toml is not None:
        (tmp_path / "gateway.toml").write_text(toml)
        env["AICREDITS_CONFIG"] = str(tmp_path / "gateway.toml")
        says = says.format(file=tmp_path / "gateway.toml")
    db = tmp_path / "aicredits.db"
    if command == "serve" and case == next(iter(BAD)):   # a real start-up
        proc = subprocess.run([sys.executable, "-m", "aicredits", "serve", "--port", str(free_port())],
                              env=_env(f"sqlite:///{db}", env), cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)
    else:
        if command == "serve":
            def started(*args, **kw):
                raise AssertionError("serve went past its settings")
            monkeypatch.setattr("aicredits.cli.serve.run_server", started)
        proc = in_process([command] + (["--port", "9"] if command == "serve" else []),
                          _env(f"sqlite:///{db}", env), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(f"error: {says}")
    assert proc.stdout == "" and not db.exists()


# ---------------------------------------------------------------------------- 5. serve, logs, make
def test_a_busy_port_is_one_line_and_nothing_is_created(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "aicredits.db"
        proc = subprocess.run([sys.executable, "-m", "aicredits", "serve", "--port", str(port)],
                              env=_env(f"sqlite:///{db}"), cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        (f"error: cannot listen on 127.0.0.1:{port}: address already in use (another program is listening "
        "there: stop it, or choose another port with --port, or PORT=... with make run)")]
    assert not db.exists() and not (tmp_path / "aicredits-first-admin.txt").exists()


def test_serve_on_the_default_database_with_text_logs_no_call_log_and_redis_down(tmp_path):
    """`serve` from one directory, the CLI from another: the same default database. The log is
    readable text (AICREDITS_LOG_FORMAT=text), has no per-call line (AICREDITS_ACCESS_LOG=off),
    warns at start that the configured Redis is unreachable, and says "serving on" only once the
    server accepts connections."""
    home, workdir, elsewhere = tmp_path / "home", tmp_path / "server", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    dead_redis = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICREDITS_") and k != "XDG_DATA_HOME"}
    env.update({"HOME": str(home), "AICREDITS_LOG_FORMAT": "text", "AICREDITS_ACCESS_LOG": "off",
                "AICREDITS_REDIS_URL": f"redis://:hunter2-secret@127.0.0.1:{dead_redis}/0"})
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "aicredits", "serve", "--port", str(port)], cwd=workdir,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while "serving on" not in log_path.read_text():
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.1)
        # said only once it accepts connections: the first request is answered
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        secrets_file = home / ".local/share/aicredits/aicredits-first-admin.txt"
        key = re.search(r"sk-[0-9a-f]{64}", secrets_file.read_text()).group(0)
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "demo/echo", "messages": [{"role": "user", "content": "Hello!"}]})
        assert resp.status_code == 200, resp.text
        # the CLI, from another directory and with no database setting, sees that call
        cwd = os.getcwd()
        os.chdir(elsewhere)
        try:
            rows = json.loads(ok("usage", "--json", env={"HOME": str(home), "XDG_DATA_HOME": None}).stdout)
        finally:
            os.chdir(cwd)
        assert [(r["model"], r["status"], r["account"]) for r in rows] == [("demo/echo", 200,
                                                                            "admin@aicredits.local")]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(30)
    text = log_path.read_text()
    lines = text.splitlines()
    assert not any(line.startswith("{") for line in lines), text                       # text, not JSON
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ", line) for line in lines
               if line.strip()), text
    assert "aicredits.calls" not in text and "request_id=" not in text                   # no per-call log
    redis_line = next(line for line in lines if "AICREDITS_REDIS_URL" in line)
    assert "WARNING" in redis_line and f"127.0.0.1:{dead_redis}" in redis_line and "not reachable" in redis_line
    assert "hunter2-secret" not in text
    order = [i for i, line in enumerate(lines) if "Application startup complete" in line or "serving on" in line]
    assert ["serving on" in lines[i] for i in order] == [False, True], text
    assert list(workdir.iterdir()) == [] and list(elsewhere.iterdir()) == []


def test_log_format_auto_is_text_on_a_terminal_and_json_otherwise(tmp_path, capsys):
    from aicredits import logs
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty, open(tmp_path / "file", "w") as plain:
            assert logs.use_text("auto", tty) is True
            assert logs.use_text("auto", plain) is False
            assert logs.use_text("json", tty) is False and logs.use_text("text", plain) is True
    finally:
        os.close(leader)
        os.close(follower)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aicredits.calls").level)
    try:
        logs.configure("INFO", access_log=False, log_format="json")
        logging.getLogger("aicredits.calls").info("call", extra={"fields": {"status": 200}})
        logging.getLogger("aicredits").info("kept")
        logs.configure("INFO", access_log=True, log_format="text")
        logging.getLogger("aicredits.calls").info("call", extra={"fields": {"status": 200, "model": "demo/echo"}})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("aicredits.calls").setLevel(saved[2])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert json.loads(err[0])["msg"] == "kept"
    assert re.fullmatch(r"\S+ \S+ INFO    aicredits\.calls: call status=200 model=demo/echo", err[1])


def test_make_run_installs_only_what_serving_needs_and_honours_port_and_host():
    def dry(*args: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        out = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return out.splitlines()
    run = dry("run", "PORT=8001", "HOST=0.0.0.0")
    assert not any("[dev]" in line for line in run), run
    assert any(re.search(r"pip install .*-e \.$", line) for line in run), run
    assert run[-1] == ".venv/bin/aicredits serve --host 0.0.0.0 --port 8001"
    assert dry("run")[-1] == ".venv/bin/aicredits serve --host 127.0.0.1 --port 8000"
    test = dry("test")
    assert any("-e '.[dev]'" in line for line in test), test
    # separate stamps: the dev extras' stamp is not the one `make run` checks
    stamps = {line.split()[-1] for line in run + test if line.startswith("touch ")}
    assert stamps == {".venv/.installed-run", ".venv/.installed"}
