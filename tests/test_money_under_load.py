"""Money under concurrent load across gateway processes (PostgreSQL + Redis): bench/load_money.py
run small (2 `serve` processes x 40 callers against 20 wallets that run dry, 8 s). Zero
overdrafts, no call lost or charged twice: the usage rows' costs = the ledger's charges = what
the clients were told = the upstream's answers x the price. The full run (4 x 200 callers, 60 s)
is the same script with its defaults; its numbers are in docs/operations.md ("Faults")."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PG_ADMIN_DSN, ROOT


def test_no_overdraft_and_no_lost_or_double_charge_under_load(pg_server, redis_url, tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load_money.py"), "--processes", "2",
                           "--callers", "40", "--wallets", "20", "--duration", "8", "--wallet-inr", "0.05",
                           "--limit-inr", "0.03", "--pg", PG_ADMIN_DSN, "--redis", redis_url, "--json",
                           "--out", str(out)], capture_output=True, text=True, timeout=240, check=False)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["checks"] and all(report["checks"].values()), report
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the wallets ran dry under the load: money was contended, and refused rather than overdrawn
    assert report["statuses"].get("200", 0) > 100 and report["statuses"].get("402", 0) > 0, report["statuses"]
    assert set(report["statuses"]) <= {"200", "402"}, report["statuses"]
    assert report["usage_sum"] == report["ledger_charges"] == report["told"] == \
        report["upstream_answered"] * report["price_per_call"] > 0
