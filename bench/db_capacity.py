"""How many calls a second one PostgreSQL carries, and how many of its transactions one call costs.

    .venv/bin/python bench/db_capacity.py                          # workers 1,2; slices off,on; 8 s each
    .venv/bin/python bench/db_capacity.py --workers 1,2,4 --slices on --duration 15

For each (workers, slices) pair it makes a fresh, uniquely named PostgreSQL database (dropped
after), starts `aicredits serve --workers N` on it in front of `bench/upstream.py` (no CPU pinning:
the gateway processes, PostgreSQL and wrk share the machine), creates `--keys` keys (each its own
account and wallet, 1,000,000 INR), and drives them with one wrk per key, `--connections` in all,
non-streaming. It reports calls/s, the database's committed transactions per call (from
`pg_stat_database.xact_commit`, which counts every transaction of that database: the hot path's,
the sweeper's and lease renewals'), and the gateways' CPU per call. Results go to
`bench/results/db_capacity.{json,md}`.

The number to read is transactions per call; calls/s on a shared 2-core machine measures the
machine, not PostgreSQL (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    FALLBACK_LUA,
    ROOT,
    SHARED_LUA,
    Proc,
    chat_body,
    free_port,
    log,
    run_wrk,
    tree_cpu_s,
    validate,
)

ADMIN_DSN = os.environ.get("AICREDITS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _commits(db: str) -> int:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", db))
    finally:
        await conn.close()


def backends_cpu_s(db: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving database `db` (read from /proc:
    a backend's command line names its database)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if not cmd.startswith("postgres:") or f" {db} " not in cmd:
                continue
            total += tree_cpu_s(int(pid))
        except (OSError, ValueError):
            continue
    return total


def one_run(workers: int, slices: str, keys: int, connections: int, duration: int, lua: Path, cli: str,
            python: str) -> dict:
    db = "aicredits_bench_" + uuid.uuid4().hex[:12]
    base = ADMIN_DSN.rsplit("/", 1)[0]
    url = f"{base}/{db}"
    state = Path(tempfile.mkdtemp(prefix="aicredits-dbcap-"))
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
    procs: list[Proc] = []
    try:
        up_port, gw_port = free_port(), free_port()
        up = Proc("upstream", [python, str(ROOT / "bench" / "upstream.py"), "--port", str(up_port)],
                  dict(os.environ), state, state / "upstream.log")
        procs.append(up)
        up.wait_port(up_port, 15)
        env = dict(os.environ, OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1", OPENAI_API_KEY="sk-bench-mock",
                   AICREDITS_DATABASE_URL=url, AICREDITS_QUOTA_SLICES=slices, AICREDITS_ACCESS_LOG="false")
        gw = Proc("gateway", [cli, "serve", "--host", "127.0.0.1", "--port", str(gw_port), "--workers", str(workers)],
                  env, state, state / "server.log")
        procs.append(gw)
        gw.wait_port(gw_port, 90)
        secrets = []
        for i in range(keys):
            r = subprocess.run([cli, "keys", "create", "--credits", "1000000", "--email", f"bench{i}@example.com",
                                "--json"], env=env, cwd=state, capture_output=True, text=True, timeout=60, check=True)
            secrets.append(json.loads(r.stdout)["key"])
        body = chat_body("gpt-4o-mini", False)
        target = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        for secret in secrets:
            validate(gw_port, "/v1/chat/completions", secret, False, "gpt-4o-mini")
        per = max(1, connections // keys)
        _parallel_wrk(target, body, secrets, per, 3, lua)          # warm-up
        time.sleep(1.0)
        c0, g0, p0 = asyncio.run(_commits(db)), tree_cpu_s(gw.pid), backends_cpu_s(db)
        t0 = time.monotonic()
        results = _parallel_wrk(target, body, secrets, per, duration, lua)
        wall = time.monotonic() - t0
        g1, p1 = tree_cpu_s(gw.pid), backends_cpu_s(db)
        time.sleep(1.5)    # the last batch settles, then the statistics are flushed
        c1 = asyncio.run(_commits(db))
        calls = sum(r["requests"] for r in results)
        errors = sum(r["error_total"] for r in results)
        return {"workers": workers, "slices": slices, "keys": keys, "connections": per * keys,
                "calls_per_s": round(calls / wall, 1), "calls": calls, "errors": errors,
                "db_commits": c1 - c0, "commits_per_call": round((c1 - c0) / calls, 3) if calls else None,
                "gateway_cpu_ms_per_call": round(1000 * (g1 - g0) / calls, 3) if calls else None,
                # the backends of this database only (not the WAL writer or checkpointer); a backend
                # that started during the run counts its whole life, one that ended is missed
                "pg_backend_cpu_ms_per_call": round(1000 * (p1 - p0) / calls, 3) if calls else None,
                "p50_ms": sorted(r["latency_ms"]["p50"] for r in results)[len(results) // 2]}
    finally:
        for p in reversed(procs):
            p.stop()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def _parallel_wrk(url: str, body: str, secrets: list[str], per: int, duration: int, lua: Path) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(secrets)) as ex:
        return list(ex.map(lambda s: run_wrk(url, body, s, per, duration, lua, []), secrets))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="gateway processes per run, comma-separated")
    ap.add_argument("--slices", default="off,on", help="AICREDITS_QUOTA_SLICES values, comma-separated")
    ap.add_argument("--keys", type=int, default=4, help="keys (each its own wallet) sharing the load")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="rounds, each over every pair in turn")
    ap.add_argument("--name", default="db_capacity")
    args = ap.parse_args()
    cli = str(ROOT / ".venv" / "bin" / "aicredits")
    python = str(ROOT / ".venv" / "bin" / "python")
    lua = SHARED_LUA
    if not lua.is_file():
        lua = Path(tempfile.mkdtemp()) / "chat.lua"
        lua.write_text(FALLBACK_LUA)
    runs = []
    for _ in range(args.repeat):
        for w in (int(x) for x in args.workers.split(",")):
            for s in args.slices.split(","):
                r = one_run(w, s, args.keys, args.connections, args.duration, lua, cli, python)
                log(f"workers {w} slices {s}: {r['calls_per_s']} calls/s, {r['commits_per_call']} commits/call, "
                    f"{r['pg_backend_cpu_ms_per_call']} ms PostgreSQL CPU/call, "
                    f"{r['gateway_cpu_ms_per_call']} ms gateway CPU/call, errors {r['errors']}")
                runs.append(r)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    doc = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_end": load, "runs": runs}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(doc, indent=2))
    lines = [f"bench/db_capacity.py — finished {doc['finished']}, load average at the end {' '.join(load)}", "",
             ("| workers | slices | calls/s | DB commits per call | PostgreSQL backend CPU ms/call | "
             "gateway CPU ms/call | p50 ms | errors |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['workers']} | {r['slices']} | {r['calls_per_s']:,} | {r['commits_per_call']} | "
                     f"{r['pg_backend_cpu_ms_per_call']} | {r['gateway_cpu_ms_per_call']} | {r['p50_ms']} | "
                     f"{r['errors']} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
