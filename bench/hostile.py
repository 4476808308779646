"""A hostile authenticated client against one gateway worker: what its RSS and its /health
latency do while it sends chat bodies of millions of tiny messages.

    .venv/bin/python bench/hostile.py                      # 1 and 3 attackers, 2.5M messages
    .venv/bin/python bench/hostile.py --attackers 3 --messages 2500000
    .venv/bin/python bench/hostile.py --src /path/to/other/checkout/src --name before

What it does (everything on 127.0.0.1; every process it starts it stops again, by pid):

1. starts ``aicredits serve --workers 1`` on a fresh SQLite file (the demo/echo model answers
   offline, so no upstream is needed) and creates a key with ``keys create --json --credits``;
   with ``--src`` the gateway runs that checkout's ``src/`` (PYTHONPATH) under this .venv, to
   measure older code the same way,
2. for each attacker count: N threads each POST the same body once to /v1/chat/completions
   (``{"model": "demo/echo", "messages": [{"role": "user"}, ...]}``: 16 bytes a message, 2.5M
   messages is 38.1 MiB), while one thread GETs /health every 50 ms (each on a new connection,
   2 s timeout) and one samples the worker's VmRSS from /proc every 20 ms,
3. prints a markdown table (status and seconds of each attack, RSS before / peak / after, /health
   p50 / max and how many /health probes failed) and writes bench/results/<name>.json.

Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def request(port: int, method: str, path: str, body: bytes | None = None, key: str | None = None,
            timeout: float = 120) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Gateway:
    def __init__(self, workdir: Path, src: str | None, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {**os.environ, "AICREDITS_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
                    "AICREDITS_LOG_LEVEL": "WARNING", "AICREDITS_ACCESS_LOG": "false", **env}
        if src:
            self.env["PYTHONPATH"] = src
        self.workdir = workdir
        self.log = open(workdir / "gateway.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([PY, "-m", "aicredits", "serve", "--port", str(self.port), "--workers", "1"],
                                     cwd=workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/health", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit("the gateway did not start; see " + str(workdir / "gateway.log"))

    def key(self) -> str:
        out = subprocess.run([PY, "-m", "aicredits", "keys", "create", "--json", "--email", "attacker@example.com",
                              "--credits", "1000"], cwd=self.workdir, env=self.env, capture_output=True,
                             text=True, check=True, timeout=60)
        return json.loads(out.stdout)["key"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def attack(gw: Gateway, key: str, body: bytes, attackers: int) -> dict:
    stop = threading.Event()
    rss: list[float] = []
    health: list[float] = []
    health_failed = 0
    results: list[dict] = []

    def sample() -> None:
        while not stop.is_set():
            rss.append(rss_mib(gw.proc.pid))
            time.sleep(0.02)

    def probe() -> None:
        nonlocal health_failed
        while not stop.is_set():
            t = time.perf_counter()
            try:
                status, _ = request(gw.port, "GET", "/health", timeout=10)
                if status != 200:
                    health_failed += 1
            except OSError:
                health_failed += 1
            health.append(time.perf_counter() - t)
            time.sleep(0.05)

    def one() -> None:
        t = time.perf_counter()
        try:
            status, out = request(gw.port, "POST", "/v1/chat/completions", body, key, timeout=120)
            detail = out[:200].decode(errors="replace")
        except OSError as exc:
            status, detail = 0, f"{type(exc).__name__}: {exc}"
        results.append({"status": status, "seconds": round(time.perf_counter() - t, 3), "answer": detail})

    before = rss_mib(gw.proc.pid)
    side = [threading.Thread(target=sample), threading.Thread(target=probe)]
    for t in side:
        t.start()
    time.sleep(0.5)
    threads = [threading.Thread(target=one) for _ in range(attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    stop.set()
    for t in side:
        t.join()
    return {"attackers": attackers, "results": results, "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(max(rss or [0]), 1), "rss_after_mib": round(rss_mib(gw.proc.pid), 1),
            "health_probes": len(health), "health_failed": health_failed,
            "health_p50_ms": round(statistics.median(health) * 1000, 1) if health else None,
            "health_max_ms": round(max(health) * 1000, 1) if health else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2_500_000)
    ap.add_argument("--attackers", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--src", help="run the gateway from this checkout's src/ (PYTHONPATH)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="gateway environment")
    ap.add_argument("--name", default="hostile")
    args = ap.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    body = b'{"model":"demo/echo","messages":[' + b",".join([b'{"role":"user"}'] * args.messages) + b"]}"
    runs = []
    with tempfile.TemporaryDirectory(prefix="aicredits-hostile-") as tmp:
        for n in args.attackers:   # a fresh worker for each count: RSS before is an idle worker's
            workdir = Path(tmp) / f"run{n}"
            workdir.mkdir()
            gw = Gateway(workdir, args.src, env)
            try:
                key = gw.key()
                runs.append(attack(gw, key, body, n))
            finally:
                gw.stop()
    out = {"name": args.name, "messages": args.messages, "body_bytes": len(body), "src": args.src or "this checkout",
           "env": env, "runs": runs}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"body: {len(body):,} bytes ({len(body) / 2**20:.1f} MiB), {args.messages:,} messages; "
          f"code: {out['src']}")
    print("| attackers | answers (status, s) | RSS before / peak / after MiB | /health p50 / max ms | "
          "/health failed |")
    print("|---:|---|---|---|---:|")
    for r in runs:
        answers = ", ".join(f"{x['status']} in {x['seconds']:.2f}" for x in r["results"])
        print(f"| {r['attackers']} | {answers} | {r['rss_before_mib']:.0f} / {r['rss_peak_mib']:.0f} / "
              f"{r['rss_after_mib']:.0f} | {r['health_p50_ms']} / {r['health_max_ms']} | "
              f"{r['health_failed']} of {r['health_probes']} |")
    for r in runs:
        for x in r["results"]:
            print(f"  {r['attackers']} attacker(s): {x['status']} {x['answer'][:160]}")


if __name__ == "__main__":
    sys.exit(main())
