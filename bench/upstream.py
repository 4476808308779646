"""A fast fake OpenAI upstream for the gateway benchmark (uvloop + a raw asyncio.Protocol).

    python bench/upstream.py --port 9201

HTTP/1.1 with keep-alive (and pipelining), on 127.0.0.1 only:

* ``POST …/chat/completions`` -> the fixed ``chat.completion`` JSON of the yardstick's mock
  (its nginx server on port 9101), 419 bytes, usage 19 + 9 tokens; or, when
  the request body has ``"stream": true``, the fixed SSE body of its port 9102 (a role chunk,
  20 content deltas, a finish chunk, a usage chunk with ``choices: []``, ``data: [DONE]``;
  5,671 bytes, sent at once with a Content-Length, as nginx's ``return`` does).
* ``GET …/models`` -> a one-model list; any other path -> 404 JSON; a non-POST chat -> 405.
* ``GET /stats`` -> ``{"answered": N}``: how many chat completions it has answered (each reports
  usage 19 + 9 tokens), for bench/load_money.py's books.

Nothing is parsed beyond the request line, ``Content-Length`` / ``Transfer-Encoding: chunked``
and ``Connection: close``; the body is only searched for ``"stream": true``. One process, one
thread: on one core it serves several times what a Python gateway can, so it is not the limit
(bench/run.py reports its CPU share).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys

MODEL = "gpt-4o-mini-2024-07-18"
TEXT = "Hello! This is the mock upstream answering the benchmark request with a fixed reply."
DELTAS = ["Hello", "!", " This", " is", " the", " mock", " up", "stream", " ans", "wer", "ing", " the",
          " bench", "mark", " re", "quest", " with", " a", " fixed", " reply."]
assert "".join(DELTAS) == TEXT

CHAT_JSON = (
    b'{"id":"chatcmpl-benchmock","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":'
    b'"Hello! This is the mock upstream answering the benchmark request with a fixed reply.",'
    b'"refusal":null},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28},"system_fingerprint":"fp_benchmock"}'
)
MODELS_JSON = (b'{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1700000000,'
               b'"owned_by":"benchmock"}]}')
NOT_FOUND_JSON = b'{"error":{"message":"mock: unknown path","type":"invalid_request_error"}}'


def _chunk(rest: str) -> bytes:
    head = ('data: {"id":"chatcmpl-benchmock","object":"chat.completion.chunk","created":1700000000,'
            f'"model":"{MODEL}","system_fingerprint":"fp_benchmock",')
    return (head + rest + "}\n\n").encode()


def _sse_body() -> bytes:
    def choice(delta: str, finish: str) -> str:
        return f'"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]'

    parts = [_chunk(choice('{"role":"assistant","content":""}', "null"))]
    for d in DELTAS:
        parts.append(_chunk(choice('{"content":"' + d + '"}', "null")))
    parts.append(_chunk(choice("{}", '"stop"')))
    parts.append(_chunk('"choices":[],"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28}'))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


SSE_BODY = _sse_body()


def _response(status: str, ctype: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\nServer: benchmock\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra
            + b"Connection: keep-alive\r\n\r\n" + body)


R_CHAT = _response("200 OK", b"application/json", CHAT_JSON)
R_SSE = _response("200 OK", b"text/event-stream", SSE_BODY, b"Cache-Control: no-cache\r\n")
R_MODELS = _response("200 OK", b"application/json", MODELS_JSON)
R_404 = _response("404 Not Found", b"application/json", NOT_FOUND_JSON)
R_405 = _response("405 Not Allowed", b"application/json",
                  b'{"error":{"message":"mock: method not allowed","type":"invalid_request_error"}}')
R_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
ANSWERED = [0]    # chat completions answered (GET /stats)
MAX_HEAD = 64 * 1024


class Mock(asyncio.Protocol):
    """One connection: a byte buffer and a tiny HTTP/1.1 request splitter."""

    __slots__ = ("buf", "transport")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._fail(out)
                    return
                break
            head = buf[:end]
            first, _, rest = head.partition(b"\r\n")
            parts = first.split(b" ")
            if len(parts) != 3:
                self._fail(out)
                return
            method, target = parts[0], parts[1]
            low = rest.lower()
            length = 0
            chunked = False
            close = False
            if low:
                i = low.find(b"content-length:")
                if i >= 0:
                    j = low.find(b"\r\n", i)
                    try:
                        length = int(low[i + 15:j if j >= 0 else len(low)])
                    except ValueError:
                        self._fail(out)
                        return
                if b"transfer-encoding:" in low and b"chunked" in low:
                    chunked = True
                if b"connection: close" in low or b"connection:close" in low:
                    close = True
            start = end + 4
            if chunked:
                parsed = _dechunk(buf, start)
                if parsed is None:
                    break              # incomplete: wait for more
                body, nxt = parsed
            else:
                nxt = start + length
                if len(buf) < nxt:
                    break
                body = buf[start:nxt]
            buf = buf[nxt:]
            path = target.split(b"?", 1)[0]
            if path.endswith(b"/chat/completions"):
                if method != b"POST":
                    out.append(R_405)
                else:
                    out.append(R_SSE if STREAM_RE.search(body) else R_CHAT)
                    ANSWERED[0] += 1
            elif path == b"/stats":
                out.append(_response("200 OK", b"application/json", b'{"answered":%d}' % ANSWERED[0]))
            elif path.endswith(b"/models"):
                out.append(R_MODELS)
            else:
                out.append(R_404)
            if close:
                self.transport.write(b"".join(out))
                self.transport.close()
                self.buf = b""
                return
        self.buf = buf
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _fail(self, out: list) -> None:
        out.append(R_400)
        self.transport.write(b"".join(out))
        self.transport.close()
        self.buf = b""

    def connection_lost(self, exc) -> None:
        self.buf = b""


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at pos: (body, position after it), or None if incomplete."""
    pieces = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)     # trailers (usually none) end with a blank line
            if end < 0:
                return None
            return b"".join(pieces), end + 4
        if len(buf) < pos + size + 2:
            return None
        pieces.append(buf[pos:pos + size])
        pos += size + 2


async def serve(host: str, port: int, ready_fd: int | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Mock, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    print(f"benchmock upstream on http://{host}:{port}/v1 (pid {os.getpid()})", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9201)
    ap.add_argument("--ready-fd", type=int, default=None, help="write 'ready' to this fd once listening")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("the benchmark upstream listens on loopback only")
    try:
        import uvloop
    except ImportError:  # still works, just slower
        uvloop = None
        print("uvloop is not installed: using the default asyncio loop", file=sys.stderr)
    if uvloop is not None:
        uvloop.run(serve(args.host, args.port, args.ready_fd))
    else:
        asyncio.run(serve(args.host, args.port, args.ready_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
