"""Money under load: P gateway processes (`aicredits serve` on PostgreSQL + Redis) x C concurrent
callers each, against W small wallets, for T seconds; then the books.

    .venv/bin/python bench/load_money.py                       # 4 processes x 200 callers, 20 wallets, 60 s
    .venv/bin/python bench/load_money.py --processes 2 --callers 40 --duration 10   # a quick look

What it does (everything on 127.0.0.1; every process it starts it stops again, by pid):

1. creates a fresh PostgreSQL database (dropped at the end unless --keep), migrates it, and creates
   W accounts with one key each; every other key also has a credit limit;
2. starts ``bench/upstream.py`` (every chat completion answered with usage 19 + 9 tokens; it
   counts its answers) and P ``aicredits serve`` processes sharing the database and Redis;
3. runs P x C callers for T seconds, each call to a random wallet's key, half of them streamed
   (with ``stream_options.include_usage``), ``max_tokens`` 32; the wallets run dry part-way;
4. waits for every hold to be settled and checks: no wallet below zero and no key past its
   limit (zero overdrafts); one usage row per answered call and none twice; the sum of the usage
   rows' costs = the ledger's charges = what the clients were told = the upstream's answers x
   the price of 19 + 9 tokens; ``ledger verify`` clean.

Prints a markdown report; writes ``bench/results/load-money[-NAME].json``; exits 1 if a check fails.
tests/test_money_under_load.py runs it small (2 processes x 40 callers, 8 s) as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import aiohttp
import asyncpg

HERE = Path(__file__).resolve().parent
USD_INR, MARKUP = "83.5", "0.15"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def price(entry: dict, prompt: int, completion: int) -> int:
    """The documented charge of one call, from its /api/models entry (micro-INR, rounded up once)."""
    def f(key):
        return Fraction(Decimal(repr(entry[key])))
    usd = prompt * f("input_cost_per_1m") + completion * f("output_cost_per_1m")
    micros = usd * Fraction(Decimal(USD_INR)) * (1 + Fraction(Decimal(MARKUP)))
    return -((-micros.numerator) // micros.denominator)


def wait_http(url: str, within: float = 60) -> None:
    import urllib.request
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200")


async def pg(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def make_keys(db_url: str, wallets: int, credits: int, limit: int | None) -> list[dict]:
    """One key a wallet; every other key with `limit` (None: no limits)."""
    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine, migrate
    engine = make_engine(db_url)
    try:
        await migrate(engine, db_url)
        admin = Admin(engine)
        return [await admin.create_key(f"wallet-{i}@load.example", name=f"load {i}", credits=credits,
                                       limit=limit if i % 2 else None) for i in range(wallets)]
    finally:
        await engine.dispose()


async def verify(db_url: str) -> list:
    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine
    engine = make_engine(db_url)
    try:
        return await Admin(engine).verify()
    finally:
        await engine.dispose()


async def load(bases: list[str], keys: list[dict], callers: int, duration: float, stream_share: float) -> list:
    """P x C callers until the time is up; one (status, seconds, reported cost or None, request id, ok) a call."""
    out: list = []
    stop_at = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def caller(n: int) -> None:
            rng = random.Random(n)
            base = bases[n % len(bases)]
            i = 0
            while time.monotonic() < stop_at:
                key = rng.choice(keys)["key"]
                stream = rng.random() < stream_share
                rid = f"load-{n}-{i}"
                body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 32}
                if stream:
                    body.update(stream=True, stream_options={"include_usage": True})
                t = time.monotonic()
                cost, ok = None, False
                try:
                    async with session.post(base + "/v1/chat/completions", json=body,
                                            headers={"Authorization": f"Bearer {key}", "x-request-id": rid}) as r:
                        raw = await r.read()
                        status = r.status
                        if status == 200 and not stream:
                            cost, ok = r.headers["x-aicredits-cost"], True
                        elif status == 200:
                            ok = raw.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"error"' not in raw
                            for line in raw.split(b"\n\n"):
                                if line.startswith(b"data: {") and b'"usage"' in line:
                                    usage = json.loads(line[6:]).get("usage")
                                    if usage and "cost" in usage:
                                        cost = repr(usage["cost"])
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status, ok = type(exc).__name__, False
                micros = int(Decimal(cost) * 1_000_000) if cost is not None else None
                out.append((status, time.monotonic() - t, micros, rid, ok))
                i += 1
        await asyncio.gather(*(caller(n) for n in range(callers * len(bases))))
    return out


async def books(dsn: str, db_url: str, results: list, per_call: int, answered: int, within: float) -> dict:
    deadline = time.monotonic() + within
    while (await pg(dsn, "SELECT count(*) FROM holds"))[0][0] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    holds = (await pg(dsn, "SELECT count(*) FROM holds"))[0][0]
    usage_sum = int((await pg(dsn, "SELECT coalesce(sum(cost), 0) FROM usage_records"))[0][0])
    ledger = int((await pg(dsn, "SELECT coalesce(-sum(amount), 0) FROM ledger_entries "
                                "WHERE kind IN ('charge', 'correction')"))[0][0])
    states = {r[0]: r[1] for r in await pg(dsn, "SELECT end_state, count(*) FROM usage_records GROUP BY 1")}
    twice = (await pg(dsn, "SELECT count(*) FROM (SELECT request_id FROM usage_records GROUP BY 1 "
                           "HAVING count(*) > 1) d"))[0][0]
    rows = {r[0]: r[1] for r in await pg(dsn, "SELECT request_id, cost FROM usage_records")}
    overdrawn = (await pg(dsn, "SELECT count(*) FROM wallets WHERE balance < 0 OR held <> 0"))[0][0]
    over_limit = (await pg(dsn, "SELECT count(*) FROM api_keys WHERE limit_micros IS NOT NULL "
                                "AND spent > limit_micros"))[0][0]
    told = sum(c for s, _, c, _, ok in results if s == 200 and c is not None)
    lost = [rid for s, _, c, rid, _ in results if s == 200 and rows.get(rid) != c]
    unanswered_charged = [rid for s, _, _, rid, _ in results if s != 200 and rows.get(rid)]
    problems = await verify(db_url)
    checks = {
        "holds settled": holds == 0,
        "zero overdrafts (wallets)": overdrawn == 0,
        "zero overdrafts (key limits)": over_limit == 0,
        "no call charged twice": twice == 0,
        "every answered call charged what its client was told": not lost,
        "no refused call charged": not unanswered_charged,
        "usage rows = ledger charges": usage_sum == ledger,
        "ledger charges = clients told": ledger == told,
        "usage rows = upstream answers x price": usage_sum == answered * per_call,
        "completed rows = upstream answers": states.get("completed", 0) == answered,
        "ledger verify": problems == [],
    }
    return {"checks": checks, "usage_sum": usage_sum, "ledger_charges": ledger, "told": told,
            "upstream_answered": answered, "price_per_call": per_call, "end_states": states,
            "lost": lost[:10], "charged_but_refused": unanswered_charged[:10], "verify": [str(p) for p in problems]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="--workers of each serve process")
    ap.add_argument("--callers", type=int, default=200, help="concurrent callers per process")
    ap.add_argument("--wallets", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--wallet-inr", type=Decimal, default=Decimal("0.5"), help="credits of each wallet")
    ap.add_argument("--limit-inr", type=Decimal, default=Decimal("0.3"), help="limit of every other key")
    ap.add_argument("--stream-share", type=float, default=0.5)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="an admin DSN")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--name", default="")
    ap.add_argument("--out", type=Path, default=None, help="the JSON report's path "
                                                          "(default bench/results/load-money[-NAME].json)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="aicredits-load-"))
    db = "aicredits_load_" + uuid.uuid4().hex[:10]
    dsn = args.pg.rsplit("/", 1)[0] + "/" + db
    asyncio.run(pg(args.pg, f'CREATE DATABASE "{db}"'))
    procs: list[subprocess.Popen] = []
    try:
        keys = asyncio.run(make_keys(dsn, args.wallets, int(args.wallet_inr * 1_000_000),
                                     int(args.limit_inr * 1_000_000)))
        up_port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(up_port)],
                                      stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{up_port}/stats")
        env = {**os.environ, "AICREDITS_DATABASE_URL": dsn, "AICREDITS_REDIS_URL": args.redis,
               "AICREDITS_REDIS_PREFIX": f"load-{db}:", "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
               "OPENAI_API_KEY": "sk-bench", "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
               "AICREDITS_ACCESS_LOG": "false", "AICREDITS_STATE_DIR": str(work)}
        bases = []
        for _ in range(args.processes):
            port = free_port()
            log = open(work / f"gateway-{port}.log", "ab")  # noqa: SIM115 - the child writes it until the end
            procs.append(subprocess.Popen([sys.executable, "-m", "aicredits", "serve", "--host", "127.0.0.1",
                                           "--port", str(port), "--workers", str(args.workers)],
                                          env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_http(base + "/health/ready")
        import urllib.request
        with urllib.request.urlopen(bases[0] + "/api/models") as r:
            entry = {e["id"]: e for e in json.load(r)["data"]}["openai/gpt-4o-mini"]
        per_call = price(entry, 19, 9)

        started = time.monotonic()
        results = asyncio.run(load(bases, keys, args.callers, args.duration, args.stream_share))
        took = time.monotonic() - started
        with urllib.request.urlopen(f"http://127.0.0.1:{up_port}/stats") as r:
            answered = json.load(r)["answered"]
        report = asyncio.run(books(dsn, dsn, results, per_call, answered, within=60))
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    if p is procs[0]:
                        p.terminate()               # the upstream
                    else:
                        os.killpg(p.pid, signal.SIGTERM)   # a gateway and its workers
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            asyncio.run(pg(args.pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    statuses: dict = {}
    for s, *_ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    answered_ok = [t for s, t, *_ in results if s == 200]
    lat = sorted(answered_ok)
    report.update({
        "processes": args.processes, "workers": args.workers, "callers_per_process": args.callers,
        "wallets": args.wallets, "duration_s": round(took, 1), "calls": len(results), "statuses": statuses,
        "calls_per_s": round(len(results) / took, 1),
        "streams_incomplete": sum(1 for s, _, _, _, ok in results if s == 200 and not ok),
        "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1) if lat else None,
    })
    report["checks"]["every 200 stream complete"] = report["streams_incomplete"] == 0
    ok = all(report["checks"].values())
    out = args.out or HERE / "results" / f"load-money{'-' + args.name if args.name else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"## load-money: {args.processes} processes x {args.callers} callers, {args.wallets} wallets, "
              f"{took:.0f} s\n")
        print(f"calls {len(results)} ({report['calls_per_s']}/s), statuses {statuses}, "
              f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms\n")
        print(f"usage rows {report['usage_sum']} = ledger {report['ledger_charges']} = told {report['told']} = "
              f"upstream {answered} x {per_call}\n")
        print("| check | |\n|---|---|")
        for name, passed in report["checks"].items():
            print(f"| {name} | {'ok' if passed else 'FAILED'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
