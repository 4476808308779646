"""SIGTERM drains a `serve` process: it stops accepting, lets running streams finish for
AICREDITS_DRAIN_SECONDS, cuts those still open with the documented cut event (billed prompt +
delivered output), settles everything and exits 0. On PostgreSQL, one process and `--workers 2`."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from tests.conftest import expected_micros
from tests.fakes.openai_upstream import Scenario
from tests.loadgen import assert_books, stream_call, wait_no_holds, words

DRAIN = 2.5
STREAMS = 50
SHORT, LONG = 8, 60          # deltas; 0.1 s apart: the short ones end within the drain, the long ones not


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_running_streams_then_cuts_and_bills_the_rest(start_gateway, make_pg_db, upstream, workers):
    dsn = make_pg_db()
    gw = start_gateway(db_url=dsn, workers=workers, env={"AICREDITS_DRAIN_SECONDS": str(DRAIN)})
    try:
        key = gw.create_key(credits="100")["key"]
        entry = gw.catalog()["openai/gpt-4o-mini"]
        upstream.enqueue(*[Scenario(content=words(n), chunk_delay=0.1, completion_tokens=n)
                           for _ in range(STREAMS // 2) for n in (SHORT, LONG)])
        progress: dict[str, int] = {}

        async def run():
            async with httpx.AsyncClient(base_url=gw.base_url, limits=httpx.Limits(max_connections=100)) as client:
                calls = [asyncio.create_task(stream_call(client, key, f"drain-{i}", timeout=30,
                                                         on_delta=lambda r: progress.__setitem__(r.rid, len(r.pieces))))
                         for i in range(STREAMS)]
                deadline = time.monotonic() + 20
                while (len(progress) < STREAMS or min(progress.values()) < 2) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert len(progress) == STREAMS and min(progress.values()) >= 2, "the streams did not start"
                os.kill(gw.proc.pid, signal.SIGTERM)
                sigterm = time.monotonic()
                await asyncio.sleep(0.8)
                with pytest.raises(httpx.ConnectError):   # no longer accepting
                    await client.get("/health", timeout=2)
                return sigterm, await asyncio.gather(*calls)

        sigterm, results = asyncio.run(run())
        assert gw.proc.wait(DRAIN + 15) in (0, -signal.SIGTERM)   # uvicorn re-raises the signal it handled
        exited = time.monotonic() - sigterm
        assert exited <= DRAIN + 8, exited

        complete = [r for r in results if r.complete]
        cut = [r for r in results if not r.complete]
        assert all(r.status == 200 and r.properly_cut for r in cut), [r for r in cut if not r.properly_cut]
        assert len(complete) == len(cut) == STREAMS // 2, (len(complete), len(cut))
        assert all(len(r.pieces) == SHORT for r in complete)
        for r in cut:
            assert r.cut["type"] == "service_unavailable" and r.cut["code"] == 503, r.cut
            assert 2 <= len(r.pieces) < LONG
            assert r.started + r.elapsed - sigterm >= DRAIN - 0.3, "cut before the drain time was over"

        rows = assert_books(dsn, results, lambda p, c: expected_micros(entry, p, c))
        assert {rows[r.rid]["end_state"] for r in cut} == {"upstream_cut"}
        assert {rows[r.rid]["status"] for r in cut} == {503}
        wait_no_holds(dsn, 1)
        assert gw.cli("ledger", "verify").returncode == 0
    finally:
        gw.stop()
