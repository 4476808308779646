"""Soak: the scale-out gateway (`aicredits serve --workers N` on PostgreSQL + Redis) at a moderate,
steady load for a long time, sampling what should stay flat.

    .venv/bin/python bench/soak.py                          # 30 minutes at 20 calls/s, a sample every 30 s
    .venv/bin/python bench/soak.py --minutes 5 --rate 20 --sample 15    # a shorter look

Every sample records, over the interval since the previous one: calls, errors, p50 and p99
latency; and at its end: the resident memory (RSS) and open file descriptors of the serve
process and its workers (from /proc), and the database connections the gateway holds
(pg_stat_activity). The calls are an open loop at `--rate` a second (half streamed), spread over
`--wallets` keys with credits enough for the whole run, against the fast fake upstream
(bench/upstream.py). At the end the first and last fifths of the run (after `--warmup`) are
compared: flat means RSS within +10 %, descriptors within +5, database connections within +2,
p99 within x1.5. Prints a markdown report; writes ``bench/results/soak[-NAME].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from load_money import MARKUP, MESSAGES, USD_INR, free_port, make_keys, pg, wait_http

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> list[int]:
    """The process and its children (the serve supervisor and its workers)."""
    out = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def rss_and_fds(pids: list[int]) -> tuple[int, int]:
    rss = fds = 0
    for pid in pids:
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return rss, fds


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def soak(args, base: str, keys: list[dict], pid: int, dsn: str, db: str) -> list[dict]:
    samples: list[dict] = []
    window: list[float] = []
    errors = 0
    stop_at = time.monotonic() + args.minutes * 60
    sem = asyncio.Semaphore(args.max_in_flight)
    rng = random.Random(1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(i: int) -> None:
            nonlocal errors
            stream = i % 2 == 1
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 32}
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            t = time.monotonic()
            try:
                async with sem, session.post(base + "/v1/chat/completions", json=body, headers={
                        "Authorization": f"Bearer {rng.choice(keys)['key']}", "x-request-id": f"soak-{i}"}) as r:
                    raw = await r.read()
                    ok = r.status == 200 and (not stream or raw.endswith(b"data: [DONE]\n\n"))
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            if ok:
                window.append(time.monotonic() - t)
            else:
                errors += 1

        async def sampler() -> None:
            nonlocal errors
            started = time.monotonic()
            while time.monotonic() < stop_at + 1:
                await asyncio.sleep(args.sample)
                lat, window[:] = list(window), []
                errs, errors = errors, 0
                rss, fds = rss_and_fds(tree(pid))
                conns = (await pg(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db))[0][0]
                samples.append({"t": round(time.monotonic() - started), "calls": len(lat), "errors": errs,
                                "p50_ms": round(pct(lat, 0.5) * 1000, 1) if lat else None,
                                "p99_ms": round(pct(lat, 0.99) * 1000, 1) if lat else None,
                                "rss_mb": round(rss / 2**20, 1), "fds": fds, "db_connections": conns})
                s = samples[-1]
                print(f"t={s['t']:>5}s calls={s['calls']:>5} errors={s['errors']} p50={s['p50_ms']} ms "
                      f"p99={s['p99_ms']} ms rss={s['rss_mb']} MB fds={s['fds']} db={s['db_connections']}",
                      file=sys.stderr, flush=True)

        sampling = asyncio.create_task(sampler())
        tasks: set[asyncio.Task] = set()
        i = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            next_at += 1 / args.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)
        await sampling
    return samples


def verdict(samples: list[dict], warmup: float) -> dict:
    steady = [s for s in samples if s["t"] > warmup and s["calls"]] or samples
    n = max(1, len(steady) // 5)
    first, last = steady[:n], steady[-n:]

    def mean(rows, key):
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.mean(vals) if vals else 0.0

    out = {}
    for key, flat in (("rss_mb", lambda a, b: b <= a * 1.10), ("fds", lambda a, b: b <= a + 5),
                      ("db_connections", lambda a, b: b <= a + 2), ("p99_ms", lambda a, b: b <= a * 1.5)):
        a, b = mean(first, key), mean(last, key)
        out[key] = {"first": round(a, 1), "last": round(b, 1), "flat": bool(flat(a, b))}
    out["errors"] = sum(s["errors"] for s in samples)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=20.0, help="calls a second (open loop)")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the comparison")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wallets", type=int, default=20)
    ap.add_argument("--max-in-flight", type=int, default=200)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="an admin DSN")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--name", default="")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="aicredits-soak-"))
    db = "aicredits_soak_" + uuid.uuid4().hex[:10]
    dsn = args.pg.rsplit("/", 1)[0] + "/" + db
    asyncio.run(pg(args.pg, f'CREATE DATABASE "{db}"'))
    procs: list[subprocess.Popen] = []
    try:
        calls = args.rate * args.minutes * 60
        keys = asyncio.run(make_keys(dsn, args.wallets, int(calls / args.wallets * 2 * 1000) + 10_000_000, None))
        up_port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(up_port)],
                                      stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{up_port}/stats")
        port = free_port()
        env = {**os.environ, "AICREDITS_DATABASE_URL": dsn, "AICREDITS_REDIS_URL": args.redis,
               "AICREDITS_REDIS_PREFIX": f"soak-{db}:", "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
               "OPENAI_API_KEY": "sk-bench", "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
               "AICREDITS_ACCESS_LOG": "false", "AICREDITS_STATE_DIR": str(work)}
        log = open(work / "gateway.log", "ab")  # noqa: SIM115 - the child writes it until the end
        gw = subprocess.Popen([sys.executable, "-m", "aicredits", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", str(args.workers)], env=env, cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(gw)
        wait_http(f"http://127.0.0.1:{port}/health/ready")
        samples = asyncio.run(soak(args, f"http://127.0.0.1:{port}", keys, gw.pid, dsn, db))
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    if p is procs[0]:
                        p.terminate()
                    else:
                        os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        asyncio.run(pg(args.pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    report = {"minutes": args.minutes, "rate": args.rate, "workers": args.workers, "samples": samples,
              "verdict": verdict(samples, args.warmup)}
    out = HERE / "results" / f"soak{'-' + args.name if args.name else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    v = report["verdict"]
    print(f"## soak: {args.minutes:g} min at {args.rate:g} calls/s, serve --workers {args.workers}\n")
    print("| t (s) | calls | errors | p50 ms | p99 ms | RSS MB | fds | db conns |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        print(f"| {s['t']} | {s['calls']} | {s['errors']} | {s['p50_ms']} | {s['p99_ms']} | {s['rss_mb']} | "
              f"{s['fds']} | {s['db_connections']} |")
    print("\n| measure | first fifth | last fifth | flat |\n|---|---:|---:|---|")
    for key in ("rss_mb", "fds", "db_connections", "p99_ms"):
        print(f"| {key} | {v[key]['first']} | {v[key]['last']} | {'yes' if v[key]['flat'] else 'NO'} |")
    print(f"\nerrors: {v['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
