"""Clients and checks shared by the lifecycle and fault tests (gateway subprocesses on
PostgreSQL): streaming and plain chat calls that record what the client saw, and the books
checked against them from the database."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import httpx

from tests.api.test_end_states import output_estimate, prompt_estimate

MESSAGES = [{"role": "user", "content": "Count for me"}]
MODEL = "openai/gpt-4o-mini"
FAKE_PROMPT, FAKE_COMPLETION = 19, 9     # the fake upstream's usage for a default Scenario


def words(n: int) -> str:
    """n deltas of 4 bytes each ('w00 ', …; the last 'wNN'): the estimator counts 1 token per delta."""
    return " ".join(f"w{i:02d}" for i in range(n))


@dataclass
class Result:
    """One call as its client saw it."""
    rid: str
    stream: bool
    started: float = 0.0
    elapsed: float = 0.0
    status: int | None = None       # None: no HTTP answer (connection refused or broken)
    error: str | None = None        # a transport error, or the error body's type
    retry_after: str | None = None
    cost_micros: int | None = None  # what the client was told it was charged
    pieces: list[str] = field(default_factory=list)   # content deltas received (streams)
    finished: bool = False          # a finish_reason other than "error" arrived
    done: bool = False              # data: [DONE] arrived
    cut: dict | None = None         # the cut event's "error" object

    @property
    def complete(self) -> bool:
        """A whole stream: its finish, its usage (cost), [DONE], no cut event."""
        return self.finished and self.done and self.cut is None and self.cost_micros is not None

    @property
    def properly_cut(self) -> bool:
        """A stream that ended with the documented cut event, then [DONE]."""
        return self.cut is not None and self.done


def micros(inr) -> int:
    return int(Decimal(str(inr)) * 1_000_000)


async def stream_call(client: httpx.AsyncClient, key: str, rid: str, *, timeout: float = 60,
                      on_delta=None, model: str = MODEL, extra: dict | None = None) -> Result:
    body = {"model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True},
            **(extra or {})}
    res = Result(rid, True, started=time.monotonic())
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, timeout=timeout,
                                 headers={"Authorization": f"Bearer {key}", "x-request-id": rid}) as r:
            res.status = r.status_code
            res.retry_after = r.headers.get("retry-after")
            if r.status_code != 200:
                await r.aread()
                res.error = _error_type(r.content)
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    res.done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    res.cut = chunk["error"]
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        res.pieces.append(piece)
                        if on_delta is not None:
                            on_delta(res)
                    if choice.get("finish_reason") not in (None, "error"):
                        res.finished = True
                if chunk.get("usage"):
                    res.cost_micros = micros(chunk["usage"]["cost"])
    except httpx.HTTPError as exc:
        res.error = type(exc).__name__
    finally:
        res.elapsed = time.monotonic() - res.started
    return res


async def plain_call(client: httpx.AsyncClient, key: str, rid: str, *, timeout: float = 60,
                     model: str = MODEL, extra: dict | None = None) -> Result:
    body = {"model": model, "messages": MESSAGES, **(extra or {})}
    res = Result(rid, False, started=time.monotonic())
    try:
        r = await client.post("/v1/chat/completions", json=body, timeout=timeout,
                              headers={"Authorization": f"Bearer {key}", "x-request-id": rid})
        res.status = r.status_code
        res.retry_after = r.headers.get("retry-after")
        if r.status_code == 200:
            res.cost_micros = micros(r.headers["x-aicredits-cost"])
            res.finished = res.done = True
        else:
            res.error = _error_type(r.content)
    except httpx.HTTPError as exc:
        res.error = type(exc).__name__
    finally:
        res.elapsed = time.monotonic() - res.started
    return res


def _error_type(raw: bytes) -> str | None:
    try:
        return json.loads(raw)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return raw[:80].decode(errors="replace")


# ---------------------------------------------------------------- the books, from PostgreSQL
async def _fetch(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def fetch(dsn: str, sql: str, *args) -> list[dict]:
    return asyncio.run(_fetch(dsn, sql, *args))


def wait_no_holds(dsn: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not fetch(dsn, "SELECT call_id FROM holds"):
            return
        time.sleep(0.2)
    raise AssertionError(f"holds still open after {within:g} s: {fetch(dsn, 'SELECT * FROM holds')}")


def usage_by_request(dsn: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in fetch(dsn, "SELECT call_id, request_id, end_state, status, cost, prompt_tokens, completion_tokens "
                          "FROM usage_records"):
        out.setdefault(row["request_id"], []).append(row)
    return out


def assert_books(dsn: str, results: list[Result], price) -> dict[str, dict]:
    """Every call billed exactly once, as its client was told: one usage row per call that reached a
    hold, a completed one charged the fake upstream's reported usage at the catalog price (and what
    the client was told), a cut one its prompt + the output its client received; a refused call
    (no hold) charged nothing. The ledger's charges equal the usage rows' costs, wallet by wallet;
    no wallet and no key below zero or past its limit. `price(prompt, completion)` -> micro-INR.
    Returns the usage row of each request id."""
    rows = usage_by_request(dsn)
    seen: dict[str, dict] = {}
    for res in results:
        mine = rows.get(res.rid, [])
        assert len(mine) <= 1, (res, mine)
        row = mine[0] if mine else None
        if res.status == 200 and (res.complete or not res.stream):
            assert row is not None and row["end_state"] == "completed", (res, row)
            assert row["cost"] == res.cost_micros == price(FAKE_PROMPT, row["completion_tokens"]), (res, row)
        elif res.status == 200 and res.properly_cut:
            assert row is not None and row["end_state"] in ("upstream_cut", "zero_output_error"), (res, row)
            delivered = output_estimate(res.pieces) if res.pieces else 0
            assert row["completion_tokens"] == delivered, (res, row)
            expected = price(prompt_estimate(MESSAGES), delivered) if delivered else 0
            assert row["cost"] == expected, (res, row)
        else:   # refused before its answer (503, a refused connection): nothing charged
            assert row is None or row["cost"] == 0, (res, row)
        if row is not None:
            seen[res.rid] = row
    charges = fetch(dsn, "SELECT account_id, -SUM(amount) AS spent FROM ledger_entries "
                         "WHERE kind IN ('charge', 'correction') GROUP BY account_id")
    usage = fetch(dsn, "SELECT account_id, SUM(cost) AS spent FROM usage_records GROUP BY account_id")
    assert {r["account_id"]: r["spent"] for r in charges if r["spent"]} == \
        {r["account_id"]: r["spent"] for r in usage if r["spent"]}
    assert fetch(dsn, "SELECT account_id FROM wallets WHERE balance < 0 OR held < 0 OR held > balance") == []
    assert fetch(dsn, "SELECT id FROM api_keys WHERE held < 0 OR (limit_micros IS NOT NULL AND "
                      "spent + held > limit_micros)") == []
    return seen


def make_keys(db_url: str, n: int, credits: int, *, limit: int | None = None, rpm: int | None = None) -> list[dict]:
    """n keys, each on its own wallet of `credits` micro-INR (in this process: faster than the CLI)."""
    import uuid

    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine

    async def make():
        engine = make_engine(db_url)
        try:
            admin = Admin(engine)
            return [{**await admin.create_key(f"load-{uuid.uuid4().hex[:10]}@example.com", name="load",
                                              credits=credits, limit=limit, rpm=rpm)} for _ in range(n)]
        finally:
            await engine.dispose()
    return asyncio.run(make())


def verify_ledger(db_url: str) -> list:
    """What `aicredits ledger verify` reports (its problems; [] when the books balance)."""
    from aicredits.services.admin import Admin
    from aicredits.store.db import make_engine

    async def run():
        engine = make_engine(db_url)
        try:
            return await Admin(engine).verify()
        finally:
            await engine.dispose()
    return asyncio.run(run())


def tracebacks(log_text: str) -> list[str]:
    """The gateway log's lines carrying a traceback, except asyncpg's own warning while its pool
    cannot reopen connections ("Failed to restore the pool connection floor; retrying")."""
    out = []
    for line in log_text.splitlines():
        if "Traceback" not in line:
            continue
        try:
            logger = json.loads(line).get("logger", "")
        except ValueError:
            logger = ""
        if logger != "asyncpg.pool":
            out.append(line[:2000])
    return out
