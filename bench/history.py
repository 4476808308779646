"""How fast the billing history, the request log and the usage charts render for an account
with a million calls, on SQLite and on PostgreSQL (docs/performance.md, "History pages").

    .venv/bin/python bench/history.py                      # both databases, 1,000,000 calls
    .venv/bin/python bench/history.py --db sqlite --rows 200000 --renders 10   # a quick look

What it does, per database:

1. a fresh database (a temporary SQLite file, or a uniquely named PostgreSQL database on
   127.0.0.1 that it drops at the end), migrated; one account with a key and a password;
2. bulk-loads `--rows` usage records spread over `--days` days (5 models, 1 % failed and 5 %
   cache hits, neither charged) and their charge entries, with a grant every 30 days and a
   consistent balance_after chain and wallet: sqlite3 `executemany` in one transaction, or
   asyncpg `copy_records_to_table` (COPY), then ANALYZE;
3. starts the gateway in-process, signs in through the form, and renders each page through
   httpx.ASGITransport (the whole dashboard stack, no network): first once "cold" (the first
   visit rolls the closed days up, services/history.py), then `--renders` times each; prints
   p50 / p95 / max wall milliseconds and the p50 of this process's CPU time per render (its
   threads included; PostgreSQL's own work is not in it), and streams the whole CSV export once
   through the ASGI app (time, rows, this process's memory before and at most during it);
4. writes bench/results/history-<db>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

DAY_MS = 86_400_000
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4.6", "google/gemini-2.5-flash", "openai/gpt-4o",
          "sarvam/sarvam-m"]
EMAIL = "heavy@example.in"
PASSWORD = "bench password 123"
PG_ADMIN = os.environ.get("AICREDITS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
USAGE_COLUMNS = ("call_id", "request_id", "account_id", "key_id", "model", "provider", "deployment", "endpoint",
                 "stream", "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens",
                 "cache_write_1h_tokens", "reasoning_tokens", "units", "cost", "hold", "latency_ms", "overhead_ms",
                 "status", "cache", "end_state", "error", "created_at")
LEDGER_COLUMNS = ("account_id", "kind", "amount", "balance_after", "call_id", "key_id", "note", "created_at")
GRANT = 100_000_000_000         # ₹1,00,000 every 30 days


def generate(account_id: int, key_id: str, rows: int, days: int, now: int):
    """(usage rows, ledger rows, balance, total_added, total_spent), oldest first."""
    start = now - days * DAY_MS
    step = (days * DAY_MS - 60_000) // rows
    usage, ledger = [], []
    balance = added = spent = 0
    next_grant = start
    for i in range(rows):
        at = start + i * step
        if at >= next_grant:
            balance += GRANT
            added += GRANT
            ledger.append((account_id, "grant", GRANT, balance, None, None, "monthly grant", at))
            next_grant += 30 * DAY_MS
        model = MODELS[i % 5]
        failed, hit = i % 100 == 7, i % 20 == 3
        prompt, completion = 200 + i % 900, 50 + i % 400
        cost = 0 if failed or hit else 1_000 + (prompt * 150 + completion * 600) * (4 if "sonnet" in model else 1)
        call = f"b{i:09d}"
        usage.append((call, call, account_id, key_id, model, model.split("/")[0], model, "chat", False, prompt,
                      0 if failed else completion, 0, 0, 0, 0, 0, cost, cost + 5_000, 300 + i % 1700, 1,
                      502 if failed else 200, "hit" if hit else "miss", "upstream_error" if failed else "completed",
                      None, at))
        if cost:
            balance -= cost
            spent += cost
            ledger.append((account_id, "charge", -cost, balance, call, key_id, "", at))
    return usage, ledger, balance, added, spent


async def load(url: str, rows: int, days: int) -> dict:
    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine, migrate, postgres_dsn, sqlite_file

    engine = make_engine(url)
    await migrate(engine, url)
    admin = Admin(engine)
    await admin.create_user(EMAIL, password=PASSWORD, role="admin")
    key = await admin.create_key(EMAIL, name="bench key")
    account_id = (await admin.create_user(EMAIL))["id"]
    await engine.dispose()
    t0 = time.perf_counter()
    usage, ledger, balance, added, spent = generate(account_id, key["id"], rows, days, int(time.time() * 1000))
    generated = time.perf_counter() - t0
    t0 = time.perf_counter()
    wallet = (balance, added, spent, account_id)
    if url.startswith("sqlite"):
        import sqlite3
        db = sqlite3.connect(sqlite_file(url))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(USAGE_COLUMNS))})", usage)
        db.executemany(f"INSERT INTO ledger_entries ({', '.join(LEDGER_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(LEDGER_COLUMNS))})", ledger)
        db.execute("UPDATE wallets SET balance = ?, total_added = ?, total_spent = ? WHERE account_id = ?", wallet)
        db.execute("COMMIT")
        db.execute("ANALYZE")
        db.close()
    else:
        import asyncpg
        conn = await asyncpg.connect(postgres_dsn(url))
        try:
            async with conn.transaction():
                await conn.copy_records_to_table("usage_records", records=usage, columns=USAGE_COLUMNS)
                await conn.copy_records_to_table("ledger_entries", records=ledger, columns=LEDGER_COLUMNS)
                await conn.execute("UPDATE wallets SET balance = $1, total_added = $2, total_spent = $3 "
                                   "WHERE account_id = $4", *wallet)
            await conn.execute("ANALYZE usage_records")
            await conn.execute("ANALYZE ledger_entries")
        finally:
            await conn.close()
    return {"usage_rows": len(usage), "ledger_rows": len(ledger), "generate_s": round(generated, 1),
            "load_s": round(time.perf_counter() - t0, 1), "balance": balance}


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


async def csv_export(gw, client) -> dict:
    """The whole ledger's CSV through the ASGI app itself, each chunk counted and dropped (the
    httpx test transport would keep the whole body), sampling this process's memory meanwhile."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/dashboard/billing.csv", "raw_path": b"/dashboard/billing.csv", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"bench.local"), (b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 9), "server": ("bench.local", 80)}
    got = {"bytes": 0, "lines": 0, "status": None, "rss_max": rss_mb()}
    before = got["rss_max"]

    sent, done = [], asyncio.Event()

    async def receive():
        if not sent:                    # the request, then nothing until the response is over
            sent.append(1)
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            got["status"] = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            got["bytes"] += len(body)
            got["lines"] += body.count(b"\n")
            if got["lines"] % 50_000 < 2_000:
                got["rss_max"] = max(got["rss_max"], rss_mb())
    t0 = time.perf_counter()
    await gw(scope, receive, send)
    done.set()
    assert got["status"] == 200, got
    return {"s": round(time.perf_counter() - t0, 1), "rows": got["lines"] - 1, "mb": round(got["bytes"] / 1e6, 1),
            "rss_mb_before": round(before), "rss_mb_max_during": round(got["rss_max"])}


async def measure(url: str, renders: int, days: int) -> dict:
    import httpx

    from aicredits.app import Gateway
    from aicredits.settings import load_settings

    gw = Gateway(load_settings({"AICREDITS_DATABASE_URL": url}))
    await gw.startup()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw, client=("127.0.0.1", 9)),
                               base_url="http://bench.local")
    try:
        page = await client.get("/dashboard/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = await client.post("/dashboard/signin", data={"csrf_token": csrf, "email": EMAIL, "password": PASSWORD,
                                                         "next": ""})
        assert r.status_code == 303, r.text
        log = await client.get("/dashboard/usage/requests")
        deep = re.search(r'before=(\d+\.\d+)', log.text)
        # a cursor in the middle of the history: the page half a million calls back
        mid_ms = int(time.time() * 1000) - days * DAY_MS // 2
        pages = {
            "request log, newest": "/dashboard/usage/requests",
            "request log, page 2": f"/dashboard/usage/requests?before={deep.group(1)}",
            "request log, mid-history": f"/dashboard/usage/requests?before={mid_ms}.2000000000",
            "request log, one model": "/dashboard/usage/requests?model=openai%2Fgpt-4o",
            "request log, failed only": "/dashboard/usage/requests?status=error",
            "billing, by day": "/dashboard/billing",
            "billing, by day 90 days back": "/dashboard/billing?day=" + time.strftime(
                "%Y-%m-%d", time.gmtime(time.time() - 90 * 86400)),
            "billing, every entry": "/dashboard/billing?view=entries",
            "billing, every entry mid-history": f"/dashboard/billing?view=entries&before={mid_ms}.2000000000",
            "billing, grants only": "/dashboard/billing?view=entries&kind=grant",
            "usage charts, 30 days": "/dashboard/usage",
            "usage charts, 180 days": "/dashboard/usage?from=" + time.strftime(
                "%Y-%m-%d", time.gmtime(time.time() - 179 * 86400)),
        }
        results = {}
        # cold: the first visit after the load rolls the closed days up (once per account and zone)
        t0 = time.perf_counter()
        r = await client.get("/dashboard/billing")
        assert r.status_code == 200
        results["cold: first billing visit (rolls up the closed days)"] = {"ms": round((time.perf_counter() - t0) * 1000,
                                                                                      1)}
        for name, path in pages.items():
            r = await client.get(path)      # warm-up
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            times, cpu = [], []
            for _ in range(renders):
                t0, c0 = time.perf_counter(), time.process_time()
                r = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                assert r.status_code == 200
            times.sort()
            results[name] = {"p50": round(statistics.median(times), 1),
                             "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
                             "max": round(times[-1], 1), "cpu_p50": round(statistics.median(cpu), 1)}
            print(f"  {name:36} p50 {results[name]['p50']:8.1f} ms   p95 {results[name]['p95']:8.1f} ms   "
                  f"this process's CPU p50 {results[name]['cpu_p50']:6.1f} ms", flush=True)
        results["CSV export, whole ledger"] = await csv_export(gw, client)
        print(f"  CSV: {results['CSV export, whole ledger']}", flush=True)
        return results
    finally:
        await client.aclose()
        await gw.shutdown()


def insert_cost(n: int = 50_000) -> dict:
    """What 0004_history's indexes add to the settle path's inserts on SQLite: one usage record
    and one charge entry per call, one statement each (as settle runs them), at revision
    0005_cache (the revision before it) and at 0004_history, into a table that already holds `n` calls."""
    import sqlite3

    from aicredits.store.db import make_engine
    from tests.store.test_billing_store import _at_revision  # the same Alembic runner the tests use
    out: dict[str, list] = {"0005_cache": [], "0004_history": []}
    for revision in ["0005_cache", "0004_history"] * 3:     # alternated; the best of three is kept
        tmp = tempfile.mkdtemp(prefix="aicredits-insert-")
        url = f"sqlite:///{tmp}/i.db"

        async def setup(url=url, revision=revision):
            engine = make_engine(url)
            await _at_revision(engine, url, revision)
            await engine.dispose()
        asyncio.run(setup())
        db = sqlite3.connect(f"{tmp}/i.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("INSERT INTO accounts (id, email, name, role, created_at) VALUES (1, 'a@b.in', '', 'user', 1)")
        usage, ledger, *_ = generate(1, None, 2 * n, 60, int(time.time() * 1000))
        u_sql = (f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(USAGE_COLUMNS))})")
        l_sql = (f"INSERT INTO ledger_entries ({', '.join(LEDGER_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(LEDGER_COLUMNS))})")
        db.execute("BEGIN")
        db.executemany(u_sql, usage[:n])
        db.executemany(l_sql, [r for r in ledger if r[4] is None or r[4] < usage[n][0]])
        db.execute("COMMIT")
        charges = {r[4]: r for r in ledger if r[4] is not None}
        t0 = time.perf_counter()
        for i in range(n, 2 * n, 100):                 # 100 calls per commit, as a settle batch
            db.execute("BEGIN")
            for u in usage[i:i + 100]:
                db.execute(u_sql, u)
                if u[0] in charges:
                    db.execute(l_sql, charges[u[0]])
            db.execute("COMMIT")
        out[revision].append(round((time.perf_counter() - t0) / n * 1e6, 1))
        db.close()
    out = {k: min(v) for k, v in out.items()}
    print(f"  insert cost per settled call (usage record + charge), microseconds: {out}", flush=True)
    return out


async def pg_database(create: bool, name: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run(db: str, rows: int, days: int, renders: int) -> dict:
    if db == "sqlite":
        tmp = tempfile.mkdtemp(prefix="aicredits-history-")
        url, cleanup = f"sqlite:///{tmp}/bench.db", None
    else:
        name = "aicredits_bench_" + uuid.uuid4().hex[:10]
        asyncio.run(pg_database(True, name))
        url, cleanup = PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name
    try:
        print(f"{db}: loading {rows:,} calls over {days} days ...", flush=True)
        loaded = asyncio.run(load(url, rows, days))
        print(f"  loaded {loaded}", flush=True)
        timings = asyncio.run(measure(url, renders, days))
        return {"db": db, "rows": rows, "days": days, "renders": renders, "load": loaded, "pages": timings,
                "loadavg_after": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count()}
    finally:
        if cleanup:
            asyncio.run(pg_database(False, cleanup))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--renders", type=int, default=30)
    ap.add_argument("--insert-cost", action="store_true", help="only measure what the new indexes add to "
                    "settle's inserts (SQLite)")
    args = ap.parse_args()
    if args.insert_cost:
        sys.path.insert(0, str(ROOT))
        result = insert_cost()
        (ROOT / "bench" / "results" / "history-insert-cost.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    for db in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        result = run(db, args.rows, args.days, args.renders)
        (out_dir / f"history-{db}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
