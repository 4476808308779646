"""kill -9 of one `serve --workers 2` worker with streams in flight, on PostgreSQL + Redis: the dead worker's
holds come back within the documented bound (lease + lease / 6), each of its streams is charged
what it had delivered when its lease was last renewed (end state gateway_lost), the other worker's
streams complete and are charged in full, and the ledger verifies (`aicredits ledger verify`'s
checks); no wallet below zero, no key past its limit."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import asyncpg
import httpx

from tests.api.test_end_states import MESSAGES, prompt_estimate
from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario
from tests.loadgen import fetch

LEASE = 3.0
BOUND = LEASE + LEASE / 6           # docs/billing.md: a dead process's holds are back within this
WORDS = " ".join(f"w{i:02d}" for i in range(30))   # 30 deltas of 4 bytes: the estimator counts 1 token each
STREAMS = 8


def worker_connections(parent: int, port: int) -> dict[int, int]:
    """{worker pid: established connections it holds on the gateway's port}, from /proc."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                established.add(cols[9])
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            inodes = {os.readlink(fd)[8:-1] for fd in (entry / "fd").iterdir()
                      if os.readlink(fd).startswith("socket:[")}
        except OSError:
            continue
        out[int(entry.name)] = len(inodes & established)
    return out


def holds(dsn: str) -> set[str]:
    async def q():
        conn = await asyncpg.connect(dsn)
        try:
            return {r[0] for r in await conn.fetch("SELECT call_id FROM holds")}
        finally:
            await conn.close()
    return asyncio.run(q())


def usage_rows(dsn: str) -> dict[str, dict]:
    async def q():
        conn = await asyncpg.connect(dsn)
        try:
            return {r["request_id"]: dict(r) for r in await conn.fetch(
                "SELECT call_id, request_id, end_state, status, cost, prompt_tokens, completion_tokens "
                "FROM usage_records")}
        finally:
            await conn.close()
    return asyncio.run(q())


class Stream(threading.Thread):
    def __init__(self, gw, key: str, rid: str) -> None:
        super().__init__(daemon=True)
        self.gw, self.key, self.rid = gw, key, rid
        self.deltas = 0
        self.done = False

    def run(self) -> None:
        body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
        try:
            with httpx.stream("POST", self.gw.v1 + "/chat/completions", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {self.key}", "x-request-id": self.rid}) as r:
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: ") and '"content":"w' in line:
                        self.deltas += 1
        except httpx.HTTPError:
            pass   # the worker serving it was killed


def test_kill_9_of_a_worker_with_streams_in_flight(start_gateway, make_pg_db, redis_url, upstream):
    dsn = make_pg_db()
    gw = start_gateway(db_url=dsn, workers=2, env={"AICREDITS_HOLD_LEASE_SECONDS": str(LEASE),
                                                   "AICREDITS_REDIS_URL": redis_url,
                                                   "AICREDITS_REDIS_PREFIX": f"crash-{os.getpid()}-{time.time_ns()}:"})
    try:
        key = gw.create_key(credits="100", limit="20")["key"]
        entry = gw.catalog()["openai/gpt-4o-mini"]
        upstream.enqueue(*[Scenario(content=WORDS, chunk_delay=0.2, completion_tokens=30) for _ in range(STREAMS)])
        streams = [Stream(gw, key, f"crash-{i}") for i in range(STREAMS)]
        for s in streams:
            s.start()
        deadline = time.monotonic() + 10
        while min(s.deltas for s in streams) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(s.deltas for s in streams) >= 8, "the streams did not start"
        conns = worker_connections(gw.proc.pid, gw.port)
        victim = max(conns, key=conns.get)
        assert conns[victim] > 0, conns
        held = holds(dsn)
        assert len(held) == STREAMS

        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        gone_after: dict[str, float] = {}
        while len(gone_after) < STREAMS and time.monotonic() - killed_at < BOUND + 10:
            now = holds(dsn)
            for call_id in held - now - set(gone_after):
                gone_after[call_id] = time.monotonic() - killed_at
            time.sleep(0.1)
        for s in streams:
            s.join(20)

        rows = usage_rows(dsn)
        assert sorted(rows) == sorted(s.rid for s in streams)
        dead = [s for s in streams if not s.done]
        assert dead and len(dead) == conns[victim]
        prompt = prompt_estimate(MESSAGES)
        for s in streams:
            row = rows[s.rid]
            if s.done:
                assert (row["end_state"], row["cost"]) == ("completed", expected_micros(entry, 19, 30))
                continue
            assert (row["end_state"], row["status"]) == ("gateway_lost", 502)
            # what it had delivered at its last lease renewal (every LEASE / 6 = 0.5 s, a delta per 0.2 s;
            # slack for a loaded machine): output was charged, never more than the client received
            assert max(3, s.deltas - 5) <= row["completion_tokens"] <= s.deltas
            assert row["prompt_tokens"] == prompt
            assert row["cost"] == expected_micros(entry, prompt, row["completion_tokens"]) > 0
            assert gone_after[row["call_id"]] <= BOUND + 1.0, (gone_after[row["call_id"]], BOUND)
        assert holds(dsn) == set()
        assert gw.verify() == []          # what `aicredits ledger verify` checks, in this process
        assert fetch(dsn, "SELECT account_id FROM wallets WHERE balance < 0 OR held <> 0") == []
        assert fetch(dsn, "SELECT id FROM api_keys WHERE held <> 0 OR spent > limit_micros") == []
        credits = gw.credits(key)
        spent = sum(r["cost"] for r in rows.values())
        assert (round(credits["total_spent"] * 1_000_000), credits["held"]) == (spent, 0)
    finally:
        gw.stop()
