"""The gateway's own work per request, counted rather than timed: requests go straight into the
ASGI app (no sockets), one at a time, under cProfile, and the Python and built-in function calls
per request are printed for GET /health, GET /v1/models and a non-streaming chat call to the
offline `demo/echo` model; `--cpu` adds `chat_cpu_us`, the event-loop thread's CPU per chat call
without the profiler (`time.thread_time` over 7 rounds of 300 calls, the median; the SQLite writer
thread is not in it). Unlike a timing on a shared machine, the count does not move with the
load, so a change to the request path (api/dispatch.py, api/http.py) can be compared with the
code before it (the CPU figure does move with the load: interleave before and after runs).
`--cache-hit` measures exact-cache hits instead (AICREDITS_CACHE_EXACT=true, the same chat
request repeated, so every call after the first is a free hit): the calls per hit and the loop
CPU µs per hit, non-streaming (`hit`) and streaming (`stream_hit`), with the access log on and
written as JSON to /dev/null (as a served gateway writes it to its log file):

    .venv/bin/python bench/calls_per_request.py [--cpu] [--cache-hit]
    git archive main src | tar -x -C /tmp/before && PYTHONPATH=/tmp/before/src .venv/bin/python bench/calls_per_request.py
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time

import uvloop


async def main():
    from aicredits.app import Gateway
    from aicredits.services.admin import Admin
    from aicredits.settings import load_settings
    from aicredits.store.db import make_engine, migrate
    d = tempfile.mkdtemp(prefix="aicredits-calls-")
    url = f"sqlite:///{d}/a.db"
    engine = make_engine(url)
    await migrate(engine, url)
    out = await Admin(engine).create_key("m@example.com", name="t", credits=10**15, limit=None)
    hits = "--cache-hit" in sys.argv
    env = {"AICREDITS_DATABASE_URL": url, "AICREDITS_STATE_DIR": d, "AICREDITS_LOG_LEVEL": "CRITICAL"}
    if hits:
        env.update(AICREDITS_CACHE_EXACT="true", AICREDITS_LOG_LEVEL="INFO")
        from aicredits import logs
        logs.configure("INFO", True, "json")
        # the access log's JSON lines, written and dropped
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    gw = Gateway(load_settings(env))
    await gw.startup()
    if not hits:
        logging.disable(logging.CRITICAL)
    auth = f"Bearer {out['key']}".encode()
    chat = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 5}).encode()
    if hits:   # an answer cut at max_tokens (finish "length") is never stored
        chat = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}).encode()
    stream_chat = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}],
                              "stream": True}).encode()

    async def one(method, path, body=b""):
        scope = {"type": "http", "method": method, "path": path, "query_string": b"",
                 "headers": [(b"authorization", auth), (b"content-length", str(len(body)).encode())]}
        sent = []
        done = False

        async def receive():
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(m):
            sent.append(m)
        await gw(scope, receive, send)
        assert sent[0]["status"] == 200, sent
        if hits and len(sent) > 1:
            assert (b"x-aicredits-cache", b"hit") in sent[0]["headers"], sent[0]

    results = {}
    cases = (("health", ("GET", "/health")), ("models", ("GET", "/v1/models")),
             ("chat", ("POST", "/v1/chat/completions", chat)))
    if hits:   # the first call of each is a miss and stores the answer (in the background)
        cases = (("hit", ("POST", "/v1/chat/completions", chat)),
                 ("stream_hit", ("POST", "/v1/chat/completions", stream_chat)))
        for _, args in cases:
            hits = False
            await one(*args)
            await asyncio.sleep(0.2)
            hits = True
    for name, args in cases:
        for _ in range(200):
            await one(*args)
        n = 1000 if name not in ("chat", "hit", "stream_hit") else 300
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            await one(*args)
        pr.disable()
        st = pstats.Stats(pr)
        results[name] = round(st.total_calls / n, 1)
    if "--cpu" in sys.argv:
        for name, args in cases if hits else (("chat", ("POST", "/v1/chat/completions", chat)),):
            rounds = []
            for _ in range(7):
                t = time.thread_time()
                for _ in range(300):
                    await one(*args)
                rounds.append((time.thread_time() - t) / 300 * 1e6)
            results[f"{name}_cpu_us"] = round(sorted(rounds)[3])
    print(json.dumps(results))
    await gw.shutdown()
    await engine.dispose()
    shutil.rmtree(d, ignore_errors=True)

uvloop.run(main())
