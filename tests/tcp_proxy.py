"""A TCP proxy on 127.0.0.1 that breaks connections on demand (asyncio), for putting between a
gateway and PostgreSQL or Redis.

Modes (`proxy.set_mode(...)`):
  "pass"          forward both ways
  "reset"         any connection that sends a byte is reset (RST) before the byte is forwarded:
                  every transaction fails before it commits
  "reset_commit"  a client's COMMIT is forwarded, then the connection is reset before the answer
                  comes back: the transaction committed, the client only sees a broken connection
  "down"          every open connection is reset and new ones are reset on accept (the server
                  unreachable: connections reset)
  "partition"     connections stay open and new ones are accepted, but nothing is forwarded either
                  way: the bytes wait, as TCP retransmits them across a network partition, and flow
                  again when the mode goes back to "pass" (a client that gave up and closed its
                  connection meanwhile has it closed on the other side then)

The proxy runs on the event loop that calls `start()`; `ThreadedProxy` runs one on its own thread
for tests that are not async.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

MODES = ("pass", "reset", "reset_commit", "down", "partition")


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.resets = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._flowing: asyncio.Event | None = None
        self.port = 0

    async def start(self) -> TcpProxy:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, admin_dsn: str, database: str) -> str:
        """`admin_dsn`'s user at this proxy, database `database` (PostgreSQL)."""
        head = admin_dsn.split("@", 1)[0]
        return f"{head}@127.0.0.1:{self.port}/{database}"

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def set_mode(self, mode: str) -> None:
        """Call on the proxy's event loop (ThreadedProxy.set_mode does that from any thread)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        if mode == "partition":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "down":
            for pair in list(self._open):
                self._kill(pair)

    def _kill(self, pair) -> None:
        self._open.discard(pair)
        self.resets += 1
        for w in pair:
            if w is not None:
                _reset(w)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "down":
            self.resets += 1
            _reset(writer)
            return
        pending = (writer, None)
        self._open.add(pending)
        await self._flowing.wait()            # a partition: the connection is accepted, then nothing
        if pending not in self._open:         # reset meanwhile ("down")
            return
        self._open.discard(pending)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._open.add(pair)

        async def forward(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            while pair in self._open:
                await self._flowing.wait()
                data = await src.read(65536)
                if not data:
                    break
                await self._flowing.wait()    # a partition that began while this read waited
                if pair not in self._open:
                    return
                if upstream and self.mode in ("reset", "down"):
                    self._kill(pair)
                    return
                dst.write(data)
                await dst.drain()
                if upstream and self.mode == "reset_commit" and b"COMMIT" in data:
                    self._kill(pair)
                    return

        tasks = [asyncio.ensure_future(forward(reader, up_writer, True)),
                 asyncio.ensure_future(forward(up_reader, writer, False))]
        try:   # either side closing (or failing) closes both
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pair in self._open:
                self._open.discard(pair)
                for w in pair:
                    w.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        for pair in list(self._open):
            self._kill(pair)
        if self._server is not None:
            await self._server.wait_closed()


class ThreadedProxy:
    """A TcpProxy on its own event loop in a daemon thread (for synchronous tests)."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(target_host, target_port)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)

    @property
    def port(self) -> int:
        return self.proxy.port

    def dsn(self, admin_dsn: str, database: str) -> str:
        return self.proxy.dsn(admin_dsn, database)

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return self.proxy.url(scheme, path)

    def set_mode(self, mode: str) -> None:
        async def apply() -> None:
            self.proxy.set_mode(mode)
        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
