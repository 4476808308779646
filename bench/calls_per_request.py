"""The gateway's own work per request, counted rather than timed: requests go straight into the
ASGI app (no sockets), one at a time, under cProfile, and the Python and built-in function calls
per request are printed for GET /health, GET /v1/models and a non-streaming chat call to the
offline `demo/echo` model; `--cpu` adds `chat_cpu_us`, the event-loop thread's CPU per chat call
without the profiler (`time.thread_time` over 7 rounds of 300 calls, the median; the SQLite writer
thread is not in it). Unlike a timing on a shared machine, the count does not move with the
load, so a change to the request path (api/dispatch.py, api/http.py) can be compared with the
code before it (the CPU figure does move with the load: interleave before and after runs).

`--upstream` adds the same two numbers for a chat call through the OpenAI provider to
bench/upstream.py (started on a free port; the yardstick's bodies), plain (`up_chat`) and
streamed with `stream_options.include_usage` (`up_stream`): the upstream HTTP client, the stream's
relay and metering are in these, and the upstream process's CPU is not. `--only up` runs only them.

`--top N` prints, per request kind, the N functions with the most own time per request (calls,
own µs under the profiler) to stderr.

`--cache-hit` measures exact-cache hits instead (AICREDITS_CACHE_EXACT=true, the same chat
request repeated, so every call after the first is a free hit): the calls per hit and the loop
CPU µs per hit, non-streaming (`hit`) and streaming (`stream_hit`), with the access log on and
written as JSON to /dev/null (as a served gateway writes it to its log file):

    .venv/bin/python bench/calls_per_request.py [--cpu] [--upstream] [--only up] [--top N]
    .venv/bin/python bench/calls_per_request.py [--cpu] --cache-hit
    git archive main src | tar -x -C /tmp/before && PYTHONPATH=/tmp/before/src .venv/bin/python bench/calls_per_request.py
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import uvloop

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_upstream() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bench/upstream.py did not start")


def yardstick_body(stream: bool) -> bytes:
    """The yardstick's request body (bench/run.py's chat_body)."""
    body: dict = {"model": "gpt-4o-mini",
                  "messages": [{"role": "user", "content": "Say hello to the benchmark in one short sentence."}],
                  "max_tokens": 32, "temperature": 0, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


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
    hits = ARGS.cache_hit
    env = {"AICREDITS_DATABASE_URL": url, "AICREDITS_STATE_DIR": d, "AICREDITS_LOG_LEVEL": "CRITICAL"}
    if hits:
        env.update(AICREDITS_CACHE_EXACT="true", AICREDITS_LOG_LEVEL="INFO")
        from aicredits import logs
        logs.configure("INFO", True, "json")
        # the access log's JSON lines, written and dropped
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    upstream = None
    want_up = ARGS.upstream or ARGS.only == "up"
    if want_up:
        upstream, port = start_upstream()
        env.update(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="sk-bench-mock")
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
        if checks is not None:
            checks.append(b"".join(m.get("body", b"") for m in sent[1:]))

    checks: list | None = None
    top = ARGS.top
    results = {}
    scenarios = [("health", ("GET", "/health")), ("models", ("GET", "/v1/models")),
                 ("chat", ("POST", "/v1/chat/completions", chat))]
    up = [("up_chat", ("POST", "/v1/chat/completions", yardstick_body(False))),
          ("up_stream", ("POST", "/v1/chat/completions", yardstick_body(True)))]
    if ARGS.only == "up":
        scenarios = up
    elif want_up:
        scenarios += up
    if hits:   # the first call of each is a miss and stores the answer (in the background)
        scenarios = [("hit", ("POST", "/v1/chat/completions", chat)),
                     ("stream_hit", ("POST", "/v1/chat/completions", stream_chat))]
        for _, args in scenarios:
            hits = False
            await one(*args)
            await asyncio.sleep(0.2)
            hits = True
    if want_up:   # the answers are whole and metered as the upstream reported
        checks = []
        await one(*up[0][1])
        await one(*up[1][1])
        plain, streamed = checks
        assert json.loads(plain)["usage"]["completion_tokens"] == 9, plain
        assert streamed.endswith(b"data: [DONE]\n\n") and b'"completion_tokens":9' in streamed, streamed
        checks = None
    for name, args in scenarios:
        for _ in range(200):
            await one(*args)
        n = 1000 if name in ("health", "models") else 300
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            await one(*args)
        pr.disable()
        st = pstats.Stats(pr)
        results[name] = round(st.total_calls / n, 1)
        if top:
            print(f"--- {name}: the {top} functions with the most own time per request", file=sys.stderr)
            rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]   # type: ignore[attr-defined]
            for (file, line, func), (_cc, nc, tt, _ct, _callers) in rows:
                print(f"{nc / n:7.1f} {tt / n * 1e6:8.1f} us  {func}  {file.split('site-packages/')[-1]}:{line}",
                      file=sys.stderr)
    if ARGS.cpu:
        for name, args in scenarios:
            if name in ("health", "models"):
                continue
            rounds = []
            for _ in range(7):
                t = time.thread_time()
                for _ in range(300):
                    await one(*args)
                rounds.append((time.thread_time() - t) / 300 * 1e6)
            results[f"{name}_cpu_us"] = round(sorted(rounds)[3])
    print(json.dumps(results))
    await gw.shutdown()
    if upstream is not None:
        upstream.terminate()
        upstream.wait()
    await engine.dispose()
    shutil.rmtree(d, ignore_errors=True)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--cpu", action="store_true", help="also the event-loop thread's CPU per chat call (µs)")
ap.add_argument("--upstream", action="store_true", help="also chat calls through bench/upstream.py, plain and streamed")
ap.add_argument("--only", choices=["up"], help="up: only the calls through bench/upstream.py")
ap.add_argument("--cache-hit", action="store_true",
                help="exact-cache hits instead (hit, stream_hit), with the access log on")
ap.add_argument("--top", type=int, default=0, metavar="N",
                help="print the N functions with the most own time per request kind (stderr)")
ARGS = ap.parse_args()
uvloop.run(main())
