"""The event-loop thread's CPU per read of a stream whose chunks arrive one by one (as a real
provider streams; bench/upstream.py sends a stream's body at once): an aiohttp server in a child
process sends 300 one-chunk events 0.5 ms apart, and this process reads them with the gateway's
SSEReader (providers/sse.py), `time.thread_time` around the reads; median of 7 rounds of 5 streams.
The server's CPU is not in it. Compare a change with the code before it as bench/calls_per_request.py
does (PYTHONPATH=<that checkout>/src):

    .venv/bin/python bench/sse_reads.py
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import aiohttp
import uvloop

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'


def serve(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(300):
            await resp.write(CHUNK)
            await asyncio.sleep(0.0005)
        await resp.write_eof()
        return resp
    app = web.Application()
    app.router.add_get("/", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


async def measure(port: int) -> dict:
    from aicredits.providers.sse import SSEReader
    url = f"http://127.0.0.1:{port}/"
    rounds, reads = [], 0
    async with aiohttp.ClientSession() as session:
        for _ in range(7):
            cpu, reads = 0.0, 0
            for _ in range(5):
                async with session.get(url) as resp:
                    reader = SSEReader(resp, "bench", 60.0)
                    t = time.thread_time()
                    while await reader.read() is not None:
                        reads += 1
                    cpu += time.thread_time() - t
                    getattr(reader, "close", lambda: None)()
            rounds.append(cpu / reads * 1e6)
    return {"reads_per_stream": round(reads / 5), "cpu_us_per_read": round(sorted(rounds)[3], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, metavar="PORT", help="(internal) run the dripping server")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        print(uvloop.run(measure(port)))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
