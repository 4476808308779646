"""The CPU of a gateway process's start and of its idle seconds: `aicredits serve` on a new SQLite
database (migrations, the first admin, the app's start-up) until GET /health answers, then, with
--idle N, its CPU over N idle seconds; then SIGTERM. CPU is the process's user + system time read
from /proc (Linux), so the bench's own polling is not in it. Compare two checkouts by their
interpreters, alternating runs (a loaded machine moves every number):

    .venv/bin/python bench/start_cost.py --runs 5 --idle 20
    .venv/bin/python bench/start_cost.py --python /other/checkout/.venv/bin/python --runs 5 --idle 20
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK   # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(python: str, idle: float) -> tuple[float, float, float]:
    """(wall s to /health, CPU s to /health, CPU s over the idle seconds)."""
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        env = {**os.environ, "AICREDITS_DATABASE_URL": f"sqlite:///{d}/aicredits.db",
               "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        t0 = time.monotonic()
        with open(f"{d}/log", "wb") as log:
            proc = subprocess.Popen([python, "-m", "aicredits", "serve", "--port", str(port)], cwd=d, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    sys.exit(Path(f"{d}/log").read_text())
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.02)
            wall = time.monotonic() - t0
            start = cpu_seconds(proc.pid)
            time.sleep(idle)
            idle_cpu = cpu_seconds(proc.pid) - start
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return wall, start, idle_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="the interpreter of the checkout to measure")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=0.0, help="idle seconds measured after the start")
    args = ap.parse_args()
    rows = [one(args.python, args.idle) for _ in range(args.runs)]
    for wall, start, idle_cpu in rows:
        line = f"start: {wall:.2f} s wall, {start:.2f} s CPU"
        if args.idle:
            line += f"; idle: {idle_cpu:.3f} s CPU in {args.idle:g} s ({100 * idle_cpu / args.idle:.2f} % of a core)"
        print(line)
    print(f"median start CPU {statistics.median(r[1] for r in rows):.3f} s"
          + (f", idle {100 * statistics.median(r[2] for r in rows) / args.idle:.2f} % of a core" if args.idle else ""))


if __name__ == "__main__":
    main()
