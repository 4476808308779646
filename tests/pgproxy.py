"""A TCP proxy in front of PostgreSQL that breaks connections on demand (asyncio, 127.0.0.1).

Modes (`proxy.mode`):
  "pass"          forward both ways
  "reset"         any connection that sends a byte is reset (RST) before the byte is forwarded:
                  every transaction fails before it commits
  "reset_commit"  a client's COMMIT is forwarded, then the connection is reset before the answer
                  comes back: the transaction committed, the client only sees a broken connection
  "down"          every open connection is reset and new ones are reset on accept
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class PgProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.resets = 0
        self._server: asyncio.AbstractServer | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port = 0

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, admin_dsn: str, database: str) -> str:
        """`admin_dsn`'s user at this proxy, database `database`."""
        head = admin_dsn.split("@", 1)[0]
        return f"{head}@127.0.0.1:{self.port}/{database}"

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "down":
            for pair in list(self._open):
                self._kill(pair)

    def _kill(self, pair) -> None:
        self._open.discard(pair)
        self.resets += 1
        for w in pair:
            _reset(w)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "down":
            self.resets += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._open.add(pair)

        async def client_to_server() -> None:
            while pair in self._open:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode in ("reset", "down"):
                    self._kill(pair)
                    return
                up_writer.write(data)
                await up_writer.drain()
                if self.mode == "reset_commit" and b"COMMIT" in data:
                    self._kill(pair)
                    return

        async def server_to_client() -> None:
            while pair in self._open:
                data = await up_reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
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
        for pair in list(self._open):
            self._kill(pair)
        if self._server is not None:
            await self._server.wait_closed()
