"""The one SSE reader (providers/sse.py): events split whatever the line ends (CRLF, LF, lone CR)
and wherever the chunks break, data and names parsed as the format says, and a silent or broken
upstream ending the stream with UpstreamCut. The reader is driven by a real HTTP server on
127.0.0.1 sending the bytes in the chunks each test gives."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from aicredits.providers.base import UpstreamCut
from aicredits.providers.sse import EventSplitter, SSEReader, event_data, parse_event

STREAM = (b'data: {"a":1}\n\n'
          b": keep-alive comment\n\n"
          b"event: message_start\ndata: {\"b\":2}\n\n"
          b"data: line one\ndata: line two\n\n"
          b"data: [DONE]\n\n")
EVENTS = [b'data: {"a":1}\n\n', b": keep-alive comment\n\n", b'event: message_start\ndata: {"b":2}\n\n',
          b"data: line one\ndata: line two\n\n", b"data: [DONE]\n\n"]


def split_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """(the events, the unfinished rest) of a body that arrives in `chunks`."""
    splitter = EventSplitter()
    out = [ev for chunk in chunks for ev in splitter.feed(chunk)]
    return out, splitter._rest


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_end_the_format_allows_splits_the_same(eol):
    assert split_all([STREAM.replace(b"\n", eol)]) == (EVENTS, b"")


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_events_split_wherever_the_chunks_break(eol):
    body = STREAM.replace(b"\n", eol)
    for size in (1, 2, 3, 7, 16):
        chunks = [body[i:i + size] for i in range(0, len(body), size)]
        assert split_all(chunks) == (EVENTS, b""), size


def test_a_cr_at_a_chunk_end_and_an_lf_at_the_next_start_are_one_line_end():
    # "\r" then "\n" is one line end, not two: the event must not end early
    assert split_all([b"data: a\r", b"\ndata: b\r\n\r\n"]) == ([b"data: a\ndata: b\n\n"], b"")
    # a lone CR followed by something else is a line end of its own, and an event that ends
    # with a chunk's last CR is complete at once (not held until more bytes come)
    assert split_all([b"data: a\r", b"\rdata: b\r\r"]) == ([b"data: a\n\n", b"data: b\n\n"], b"")
    assert split_all([b"data: a\r\r"]) == ([b"data: a\n\n"], b"")
    assert split_all([b"data: a\r", b"\r\ndata: b\n\n"]) == ([b"data: a\n\n", b"data: b\n\n"], b"")


def test_an_unfinished_event_stays_in_the_rest():
    assert split_all([b'data: {"a":1}\n\ndata: {"b"']) == ([b'data: {"a":1}\n\n'], b'data: {"b"')


def test_blank_lines_between_events_make_no_event():
    assert split_all([b"\n\n\n\ndata: x\n\n\n\n"]) == ([b"data: x\n\n"], b"")


@pytest.mark.parametrize(("event", "name", "data"), [
    (b"data: x\n\n", None, b"x"),
    (b"data:x\n\n", None, b"x"),                          # the space after the colon is optional
    (b"data:  two spaces\n\n", None, b" two spaces"),      # only one space is removed
    (b"event: message_stop\ndata: {}\n\n", "message_stop", b"{}"),
    (b"data: a\ndata: b\n\n", None, b"a\nb"),
    (b"data: a\nid: 7\nretry: 10\n\n", None, b"a"),        # other fields are not data
    (b"data\n\n", None, b""),                              # a field with no colon: empty value
    (b": comment\n\n", None, None),
    (b"event: ping\n\n", "ping", None),
])
def test_parse_event(event, name, data):
    assert parse_event(event) == (name, data)
    assert event_data(event) == data


async def serve(chunks: list[bytes], *, pause: float = 0.0, hang: float = 0.0, abort: bool = False):
    """A real HTTP server that sends `chunks` as an event stream, `pause` seconds apart; then it
    hangs for `hang` seconds or drops the connection (`abort`)."""
    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
            await asyncio.sleep(pause)
        if hang:
            await asyncio.sleep(hang)
        if abort:
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/"


async def read_all(chunks: list[bytes], idle: float = 5.0, **kw) -> list[list[bytes]]:
    runner, url = await serve(chunks, **kw)
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            reader = SSEReader(resp, "test", idle)
            batches = []
            while (events := await reader.read()) is not None:
                batches.append(events)
            return batches
    finally:
        await runner.cleanup()


async def test_the_reader_returns_whole_events_as_they_arrive():
    body = STREAM.replace(b"\n", b"\r\n")
    batches = await read_all([body[:10], body[10:40], body[40:]], pause=0.05)
    assert [e for batch in batches for e in batch] == EVENTS
    assert all(batches)   # a read that completed no event is not returned as an empty batch


async def test_an_unfinished_event_at_the_end_of_the_body_is_dropped():
    batches = await read_all([b"data: whole\n\n", b"data: half"])
    assert batches == [[b"data: whole\n\n"]]


async def test_a_silent_upstream_is_cut_after_the_idle_timeout():
    with pytest.raises(UpstreamCut) as info:
        await read_all([b"data: first\n\n"], idle=0.3, hang=3)
    assert info.value.timeout
    assert "stopped sending for 0.3 s" in str(info.value)


async def test_a_broken_connection_is_a_cut_not_a_timeout():
    with pytest.raises(UpstreamCut) as info:
        # a chunked body that is broken off before its last chunk
        await read_all([b"data: first\n\n", b"data: sec"], pause=0.05, abort=True)
    assert not info.value.timeout
    assert "broke off" in str(info.value)


async def test_chunks_each_within_the_idle_timeout_are_never_cut_however_long_the_stream():
    """One timer per stream, moved by every wait: 8 chunks 0.1 s apart (0.8 s) under a 0.3 s idle
    timeout arrive whole; the timer fires while a wait is due later and waits on."""
    chunks = [f"data: {i}\n\n".encode() for i in range(8)]
    batches = await read_all(chunks, idle=0.3, pause=0.1)
    assert [e for batch in batches for e in batch] == chunks


async def test_the_idle_timeout_counts_from_the_last_bytes_not_the_first():
    """A stall after bytes kept coming for longer than the timeout is cut `idle` seconds after
    the last bytes (not at once, not later)."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamCut) as info:
        await read_all([f"data: {i}\n\n".encode() for i in range(5)], idle=0.3, pause=0.1, hang=3)
    took = asyncio.get_running_loop().time() - started
    assert info.value.timeout
    assert 0.7 < took < 1.5, took


async def test_a_cancel_from_elsewhere_is_not_taken_for_the_idle_timeout():
    """The relay's own deadline cancels the same task: that cancel goes on as a cancel."""
    runner, url = await serve([b"data: first\n\n"], hang=3)
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            reader = SSEReader(resp, "test", 5.0)
            assert await reader.read() == [b"data: first\n\n"]
            task = asyncio.ensure_future(reader.read())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            reader.close()
    finally:
        await runner.cleanup()
