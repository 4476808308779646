"""Client connections, guarded where uvicorn does not: its httptools protocol with a header
timeout, a body timeout, a cap on header bytes and a cap on open connections per process.
`aicredits serve` runs it (cli/serve.py, `http=guarded_protocol(...)`).

- A request's line and headers must arrive within `header_timeout` seconds of its first byte (of
  the connection's opening, for its first request): else 408 and the connection is closed. A
  connection that never sends a byte is closed without an answer.
- Its body must arrive within `body_timeout` seconds of the headers' end, whether or not the
  route reads it (a trickle or a silent body alike): else 408 when no answer has started, and the
  connection is closed; the handler sees a disconnect.
- Headers past MAX_HEADER_BYTES: 431 and closed.
- A connection past `max_connections` open in this process gets 503 (Retry-After: 1) at once and
  is closed; nothing of its request is read.

A response's head (status line and headers) is held until its body's first write, in the same
turn of the event loop, and both go out in one write (one system call, one packet on loopback,
instead of two); a head whose body does not follow at once (a stream waiting for its first
event) goes out at the end of that turn (`_Coalescing`).

Between requests uvicorn's own keep-alive timeout (5 s) closes an idle connection. Every answer
here is in the reference's error shape, written straight to the socket (no ASGI cycle exists
yet, or it is given up): the status line, content-type, content-length and `connection: close`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from aicredits.errors import GatewayError, RequestTimeout, RequestTooLarge, ServiceUnavailable

MAX_HEADER_BYTES = 64 * 1024
LINGER_SECONDS = 1.0   # a refused connection stays half-open this long, so its client reads the 503


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES


def guarded_protocol(limits: ConnectionLimits) -> Callable[..., GuardedHttpToolsProtocol]:
    """The protocol factory for uvicorn's `http=` (picklable, for `--workers N`)."""
    return functools.partial(GuardedHttpToolsProtocol, limits=limits)


def raw_response(exc: GatewayError) -> bytes:
    body = exc.render()
    head = [STATUS_LINE[exc.status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in exc.headers()]
    return b"".join(head) + b"\r\n" + body


class _Coalescing:
    """The connection's transport as one request's cycle (uvicorn's RequestResponseCycle) sees it:
    the cycle's first write (its response's head, or a `100 Continue`) is held until its next
    write, and both are written together; at the end of the event loop's turn a held write goes
    out alone. Anything else is the transport's own (a close writes what is held first)."""

    __slots__ = ("_first", "_flush", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._first = True
        self._held: bytes | None = None
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self._transport.writelines((held, data))
        elif self._first and data:
            self._first = False
            self._held = data
            self._flush = asyncio.get_running_loop().call_soon(self._write_held)
        else:
            self._transport.write(data)

    def _write_held(self) -> None:
        self._flush = None
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._write_held()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:   # noqa: ANN401 - the transport's own attributes
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True   # the next bytes are a request's line and headers
        self._header_bytes = 0
        self._refused = False

    # ------------------------------------------------------------------ timers
    def _arm(self, seconds: float, callback: Callable[[], object]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _give_up(self, exc: GatewayError | None, answered: bool) -> None:
        """Answer `exc` unless `answered` (an answer has started on this connection for the
        request at fault, or for the one before it and is not done), then close the connection."""
        self._timer = None
        if self.transport.is_closing():
            return
        if exc is not None and not answered:
            self.transport.write(raw_response(exc))
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True   # its handler's receive() says disconnect; its sends are dropped
            cycle.message_event.set()
        self.transport.close()

    def _headers_late(self) -> None:
        """No request of its own yet: `cycle` is the previous request's, if any."""
        if self._header_bytes == 0 and self.cycle is None:
            self._give_up(None, answered=False)   # a connection that never sent a byte
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        self._give_up(RequestTimeout(f"The request's headers did not arrive within "
                                     f"{self.limits.header_timeout:g} s."), answered=busy)

    def _body_late(self) -> None:
        """`cycle` is this request's: it may have been answered already (a 401 before the body)."""
        self._give_up(RequestTimeout(f"The request body did not arrive within {self.limits.body_timeout:g} s "
                                     "of its headers."), answered=self.cycle.response_started)

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refused = True
            transport.write(raw_response(ServiceUnavailable(
                "The gateway has too many open connections; retry in a moment.", retry_after=1)))
            if transport.can_write_eof():
                transport.write_eof()
            self._timer = self.loop.call_later(LINGER_SECONDS, transport.close)
            return
        self._arm(self.limits.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes \
                and not self.transport.is_closing():
            busy = self.cycle is not None and not self.cycle.response_complete
            self._give_up(RequestTooLarge(f"The request's headers are larger than {self.limits.max_header_bytes} "
                                          "bytes.", status=431), answered=busy)

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:   # the first request's clock started with the connection
            self._arm(self.limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._arm(self.limits.body_timeout, self._body_late)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:   # its task has not run yet
            cycle.transport = _Coalescing(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_headers = True
        super().on_message_complete()
