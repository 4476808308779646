#!/usr/bin/env python3
"""The aicredits CLI with experiments patched in at start-up, to measure what a change would gain
before anyone makes it (docs/performance.md, "Ablations"). An analysis tool: it patches internals
(`SqliteBilling`, `Gateway.startup`, the modules' `uuid`), so it follows the code as it is today.

    .venv/bin/python bench/run.py --bin bench/ablate_cli.py --env ABLATE=gc --targets gateway --name gc

ABLATE is a comma-separated list of:
  uuid        request and call ids from a random prefix + a counter instead of uuid4()
  gcfreeze    gc.collect(); gc.freeze() at the end of start-up (prints the object count)
  gc          the same plus gc.set_threshold(100_000, 50, 1000)
  gcstats     print GC collections and time (and their share of process CPU) every 2 s to stderr
  nobilling   holds and settlements answered in memory, no database: the ceiling of store work
  noreserve   only the hold answered in memory
  nosettle    only the settlement answered in memory
  inline_sqlite  the same SQL and group commit run on the event-loop thread (no writer thread)
  noproxyhdr  uvicorn.run(..., proxy_headers=False)
(the access log is switched off with the gateway's own AICREDITS_ACCESS_LOG=false)
"""
import asyncio
import gc
import itertools
import os
import sys

abl = set(filter(None, os.environ.get("ABLATE", "").split(",")))

if "uuid" in abl:
    import types

    import aicredits.api.http as h
    import aicredits.services.chat as c
    prefix = os.urandom(8).hex()
    counter = itertools.count()

    class _U:
        __slots__ = ("hex",)

        def __init__(self):
            self.hex = f"{prefix}{next(counter):016x}"
    fake = types.SimpleNamespace(uuid4=_U)
    h.uuid = fake
    c.uuid = fake

if "gcfreeze" in abl:
    from aicredits.app import Gateway
    _orig_startup0 = Gateway.startup

    async def startup0(self):
        await _orig_startup0(self)
        gc.collect()
        print(f"GCOBJECTS {len(gc.get_objects())}", file=sys.stderr, flush=True)
        gc.freeze()
    Gateway.startup = startup0

if "gc" in abl:
    from aicredits.app import Gateway
    _orig_startup = Gateway.startup

    async def startup(self):
        await _orig_startup(self)
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)
    Gateway.startup = startup

if "nobilling" in abl:
    # the hold and the settlement answered on the loop, no database: the ceiling of any store work
    from aicredits.ports import SettleResult
    from aicredits.store.billing_sqlite import SqliteBilling

    async def reserve(self, req):
        return req.planner(10**15, None if req.key_id is None else 10**15)

    async def settle(self, s):
        return SettleResult(s.charge, 10**15, 10**15)
    SqliteBilling.reserve = reserve
    SqliteBilling.settle = settle

if "inline_sqlite" in abl:
    # the same SQL and group commit, but run on the event loop thread (flushed once per loop
    # iteration): no writer thread, no cross-thread wake-ups, no GIL hand-off
    from aicredits.store.billing_sqlite import SqliteBilling

    def _submit(self, fn):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        pending = self.__dict__.setdefault("_pending", [])
        pending.append((fn, fut, loop))
        if len(pending) == 1:
            loop.call_soon(self._flush_inline)
        return fut

    def _flush_inline(self):
        batch, self._pending = self._pending, []
        conn = self.__dict__.get("_iconn")
        if conn is None:
            conn = self._iconn = self._connect()
        self._execute(conn, batch)
    SqliteBilling._submit = _submit
    SqliteBilling._flush_inline = _flush_inline


if "nosettle" in abl or "noreserve" in abl:
    from aicredits.ports import SettleResult
    from aicredits.store.billing_sqlite import SqliteBilling
    if "noreserve" in abl:
        async def reserve(self, req):
            return req.planner(10**15, None if req.key_id is None else 10**15)
        SqliteBilling.reserve = reserve
    if "nosettle" in abl:
        async def settle(self, s):
            return SettleResult(s.charge, 10**15, 10**15)
        SqliteBilling.settle = settle

if "noproxyhdr" in abl:
    import uvicorn
    _run = uvicorn.run

    def run(*a, **kw):
        kw["proxy_headers"] = False
        return _run(*a, **kw)
    uvicorn.run = run

if "gcstats" in abl:
    import threading
    import time
    st = {"t0": 0.0, "n": [0, 0, 0], "s": [0.0, 0.0, 0.0]}

    def cb(phase, info):
        if phase == "start":
            st["t0"] = time.perf_counter()
        else:
            g = info["generation"]
            st["n"][g] += 1
            st["s"][g] += time.perf_counter() - st["t0"]
    gc.callbacks.append(cb)

    def report():
        last = None
        while True:
            time.sleep(2)
            cur = (list(st["n"]), list(st["s"]), time.process_time())
            if last:
                dn = [a - b for a, b in zip(cur[0], last[0])]
                ds = [a - b for a, b in zip(cur[1], last[1])]
                dcpu = cur[2] - last[2]
                print(f"GCSTATS n={dn} ms={[round(x * 1000, 1) for x in ds]} cpu_ms={dcpu * 1000:.0f} "
                      f"gc_share={100 * sum(ds) / dcpu if dcpu else 0:.1f}%", file=sys.stderr, flush=True)
            last = cur
    threading.Thread(target=report, daemon=True).start()

from aicredits.cli.main import main

sys.exit(main())
