"""Server-sent events from an upstream: the one reader every streaming provider uses.

The body is read as it arrives, each wait bounded by the stream-idle timeout, and cut into
whole events (an event ends with a blank line). Lines may end with CRLF, LF or a lone CR, as
the SSE format allows; events come out with LF line ends, so that the usual one-line
`data: ...` event can be forwarded to the client as it is. An unfinished event at the end of
the body is dropped (the format says so); the caller decides what a stream without its end
means.
"""

from __future__ import annotations

import asyncio

import aiohttp

from aicredits.providers.base import UpstreamCut


class EventSplitter:
    """Bytes in, as they arrive; whole events out (each ending with its blank line, as LF). A CR
    at the end of one piece and an LF at the start of the next are one line end."""
    __slots__ = ("_cr", "_rest")

    def __init__(self) -> None:
        self._rest = b""
        self._cr = False   # the last piece ended with a CR

    def feed(self, data: bytes) -> list[bytes]:
        if self._cr and data.startswith(b"\n"):
            data = data[1:]
        self._cr = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = (self._rest + data if self._rest else data).split(b"\n\n")
        self._rest = parts.pop()
        return [p + b"\n\n" for p in parts if p and not p.isspace()]   # (not only blank lines)


def parse_event(event: bytes) -> tuple[str | None, bytes | None]:
    """(event name, data) of one event: several `data:` lines are joined by LF; comments (lines
    that start with ':') and other fields are ignored; (None, None) when it has neither."""
    name, data = None, []
    for line in event.split(b"\n"):
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return name, (b"\n".join(data) if data else None)


def event_data(event: bytes) -> bytes | None:
    """The data of one event, or None (a comment, a keep-alive)."""
    if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2:   # one line: the usual case
        return event[6:-2]
    return parse_event(event)[1]


class SSEReader:
    """Whole events of a streamed upstream answer, batch by batch as the bytes arrive. A wait
    longer than `idle` seconds, or a broken connection, raises UpstreamCut.

    The idle timeout is one timer per stream, not a timeout context per read (4 µs of CPU each,
    paid on every chunk of a stream that arrives chunk by chunk): each wait moves the time it is
    due, and the timer, when it fires, waits on to that time if it has moved, else cancels the
    wait. `close()` cancels it."""
    __slots__ = ("_content", "_due", "_fired", "_idle", "_provider", "_split", "_timer", "_waiter")

    def __init__(self, resp: aiohttp.ClientResponse, provider: str, idle: float) -> None:
        self._content = resp.content
        self._provider = provider
        self._idle = idle
        self._split = EventSplitter()
        self._due = 0.0                                  # the event loop's time the current wait ends
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Task | None = None         # the task waiting for bytes, while it waits
        self._fired = False

    async def read(self) -> list[bytes] | None:
        """The next complete events (at least one), or None once the body has ended."""
        while True:
            try:
                # what has arrived is taken without waiting; only a wait for more is bounded
                data = self._content.read_nowait()
                if not data and not self._content.is_eof():
                    data = await self._wait()
            except TimeoutError as exc:
                raise UpstreamCut(f"The {self._provider} provider stopped sending for {self._idle:g} s.",
                                  timeout=True) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise UpstreamCut(f"The connection to the {self._provider} provider broke off.") from exc
            if not data:
                return None
            events = self._split.feed(data)
            if events:
                return events

    async def _wait(self) -> bytes:
        """The next bytes, or TimeoutError after `idle` seconds without any."""
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._idle
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._expire, loop)
        self._waiter = task = asyncio.current_task()
        try:
            return await self._content.readany()
        except asyncio.CancelledError:
            if self._fired and task is not None:
                self._fired = False
                if task.uncancel() == 0:   # cancelled by the idle timer alone
                    raise TimeoutError from None
            raise
        finally:
            self._waiter = None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._waiter is None:         # not waiting: the next wait sets a timer again
            return
        if loop.time() < self._due:      # bytes came since the timer was set: wait on
            self._timer = loop.call_at(self._due, self._expire, loop)
            return
        self._fired = True
        self._waiter.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
