"""Slow and greedy clients against a real gateway on a socket (api/connections.py, the per-key cap in
services/concurrency.py, the body budget in api/http.py), on 127.0.0.1 with small limits: every
connection that dawdles is answered 408 and closed after its timeout, whatever the route; one past
the connection cap gets 503 at once; a key past its concurrency cap, and a body past the process's
budget, get 429 with Retry-After. A slow upstream is not a slow client: its call is not cut."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from tests.fakes.openai_upstream import Scenario

TIMEOUT = 1.5        # AICREDITS_HEADER_TIMEOUT and AICREDITS_BODY_TIMEOUT here
MARGIN = 2.5         # the server closes within TIMEOUT + this (a busy test machine)
MINI = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def gw(serve_gateway):
    return serve_gateway(env={"AICREDITS_HEADER_TIMEOUT": str(TIMEOUT), "AICREDITS_BODY_TIMEOUT": str(TIMEOUT),
                              "AICREDITS_MAX_CONNECTIONS": "200", "AICREDITS_KEY_MAX_CONCURRENT": "2",
                              "AICREDITS_MAX_BODY_BYTES": "65536", "AICREDITS_BODY_BYTES_IN_FLIGHT": "100000"})


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key(credits="100")["key"]


def chat_head(key: str | None, length: int) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {length}\r\n\r\n").encode()


class Conn:
    """One raw client connection; `closed_after` is the seconds from its opening to the server's
    close, `answer` what the server wrote."""

    def __init__(self) -> None:
        self.answer = b""
        self.closed_after: float | None = None

    async def run(self, port: int, first: bytes, trickle: bytes = b"", every: float = 0.25,
                  limit: float = TIMEOUT + MARGIN + 2) -> Conn:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def feed() -> None:
            try:
                writer.write(first)
                await writer.drain()
                while trickle:
                    await asyncio.sleep(every)
                    writer.write(trickle)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass

        feeder = asyncio.ensure_future(feed())
        try:
            async with asyncio.timeout(limit):
                while True:
                    try:
                        data = await reader.read(65536)
                    except (ConnectionError, OSError):
                        data = b""
                    if not data:
                        self.closed_after = time.monotonic() - opened
                        break
                    self.answer += data
        except TimeoutError:
            pass   # still open: closed_after stays None
        finally:
            feeder.cancel()
            writer.close()
        return self

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/1.1 ") else None

    @property
    def error(self) -> dict:
        return json.loads(self.answer.split(b"\r\n\r\n", 1)[1])["error"]


async def crowd(port: int, key: str) -> dict[str, list[Conn]]:
    kinds = {
        # a request line and headers, one byte at a time (no key needed)
        "slow_header": [Conn().run(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
                        for _ in range(30)],
        # headers, then a body that trickles (a valid key: the handler is reading it)
        "slow_body": [Conn().run(port, chat_head(key, 2000), b"{") for _ in range(1)] +
                     [Conn().run(port, chat_head(None, 2000), b" ") for _ in range(19)],
        # headers promising a body that never comes
        "silent_body": [Conn().run(port, chat_head(None, 2000)) for _ in range(10)],
        # a connection that never sends a byte
        "idle": [Conn().run(port, b"") for _ in range(5)],
    }
    done = await asyncio.gather(*(c for conns in kinds.values() for c in conns))
    out, i = {}, 0
    for name, conns in kinds.items():
        out[name] = done[i:i + len(conns)]
        i += len(conns)
    return out


def test_slow_and_silent_clients_are_answered_408_and_closed_after_the_timeouts(gw, key):
    started = time.monotonic()
    result = asyncio.run(crowd(gw.port, key))
    for name, conns in result.items():
        for c in conns:
            assert c.closed_after is not None, f"a {name} connection was still open after {TIMEOUT + MARGIN + 2} s"
            assert c.closed_after >= TIMEOUT - 0.1, (name, c.closed_after)
            assert c.closed_after <= TIMEOUT + MARGIN, (name, c.closed_after)
    for c in result["slow_header"]:
        assert c.status == 408
        assert c.error == {"message": f"The request's headers did not arrive within {TIMEOUT:g} s.",
                           "type": "invalid_request_error", "code": 408}
    reading = result["slow_body"][0]   # the handler was reading it: its 408 comes from the guard
    assert reading.status == 408 and "request body did not arrive" in reading.error["message"]
    for c in result["slow_body"][1:] + result["silent_body"]:
        # no key: the 401 is sent at once, and the connection is still closed when its body does not come
        assert c.status == 401, c.answer[:200]
    for c in result["idle"]:
        assert c.answer == b""
    assert time.monotonic() - started < TIMEOUT + MARGIN + 3
    assert httpx.get(gw.base_url + "/health", timeout=5).status_code == 200


def test_a_slow_upstream_is_not_cut_by_the_client_timeouts(gw, key, upstream):
    upstream.enqueue(Scenario(first_byte_delay=TIMEOUT + 1.0))
    with httpx.Client(timeout=30) as client:   # one keep-alive connection: the second call reuses it
        for _ in range(2):
            r = client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": MINI, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})
            assert r.status_code == 200, r.text


def test_headers_past_the_cap_get_431(gw):
    async def go() -> Conn:
        return await Conn().run(gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000)
    c = asyncio.run(go())
    assert c.status == 431 and c.error["type"] == "request_too_large"
    assert c.closed_after is not None and c.closed_after < TIMEOUT


def test_a_key_past_its_concurrency_cap_gets_429_until_a_slot_frees(gw, key):
    """AICREDITS_KEY_MAX_CONCURRENT=2: two requests whose bodies have not come hold the key's two
    slots (the cap is checked before the body is read); a third gets 429 with Retry-After; once the
    two are closed (body timeout) the key is served again."""
    other = gw.create_key(credits="10")["key"]

    async def go():
        holders = [asyncio.ensure_future(Conn().run(gw.port, chat_head(other, 2000))) for _ in range(2)]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=10) as client:
            refused = await client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {other}"},
                                        json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]})
            # another key is not affected
            fine = await client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                     json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]})
            held = await asyncio.gather(*holders)
            again = await client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {other}"},
                                      json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]})
        return refused, fine, held, again

    refused, fine, held, again = asyncio.run(go())
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": {
        "message": "Too many requests in flight: this API key may have 2 at once (the gateway's limit per key). "
                   "Retry when one has finished.", "type": "rate_limit_error", "code": 429}}
    assert fine.status_code == 200
    assert [c.status for c in held] == [408, 408]
    assert again.status_code == 200, again.text


def test_bodies_past_the_process_budget_get_429(gw, key):
    """AICREDITS_BODY_BYTES_IN_FLIGHT=100000: a 60,000-byte body being received holds 60,000 of it,
    so a second one does not fit and is refused at once; a small body still fits."""
    k1, k2 = gw.create_key(credits="10")["key"], gw.create_key(credits="10")["key"]

    async def go():
        holder = asyncio.ensure_future(Conn().run(gw.port, chat_head(k1, 60_000) + b"{"))
        await asyncio.sleep(0.5)
        second = await Conn().run(gw.port, chat_head(k2, 60_000) + b"{", limit=5)
        async with httpx.AsyncClient(timeout=10) as client:
            small = await client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                      json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]})
        await holder
        return second, small

    second, small = asyncio.run(go())
    assert second.status == 429
    assert second.error == {"message": "The gateway is receiving too many large request bodies at once; retry in "
                                       "a moment.", "type": "rate_limit_error", "code": 429}
    assert b"retry-after: 1\r\n" in second.answer.lower()
    assert small.status_code == 200


def test_connections_past_the_cap_get_503_at_once(serve_gateway):
    gw = serve_gateway(env={"AICREDITS_MAX_CONNECTIONS": "10", "AICREDITS_HEADER_TIMEOUT": str(TIMEOUT)})

    async def go():
        # ten connections hold every place (idle: closed after the header timeout)
        holders = [asyncio.ensure_future(Conn().run(gw.port, b"")) for _ in range(10)]
        await asyncio.sleep(0.5)
        t = time.monotonic()
        refused = await Conn().run(gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", limit=5)
        refused_in = time.monotonic() - t
        await asyncio.gather(*holders)
        return refused, refused_in

    refused, refused_in = asyncio.run(go())
    assert refused.status == 503 and refused_in < 1.5
    assert refused.error == {"message": "The gateway has too many open connections; retry in a moment.",
                             "type": "service_unavailable", "code": 503}
    assert b"retry-after: 1\r\n" in refused.answer.lower()
    assert httpx.get(gw.base_url + "/health", timeout=5).status_code == 200   # the places are free again


def test_the_key_cap_holds_across_workers_through_redis(start_gateway, redis_url):
    """Two worker processes sharing Redis: the key's one slot, taken by a request on either worker,
    refuses the key's next request on whichever worker gets it; once that request's body has come
    and it is answered, the key is served again."""
    import redis

    prefix = f"aicredits-test-{uuid.uuid4().hex[:10]}:"
    gw = start_gateway(workers=2, env={"AICREDITS_REDIS_URL": redis_url, "AICREDITS_KEY_MAX_CONCURRENT": "1",
                                       "AICREDITS_REDIS_PREFIX": prefix,
                                       "AICREDITS_BODY_TIMEOUT": "30"})   # the holder's body comes when the test says
    made = gw.create_key(credits="10")
    key = made["key"]
    in_flight = f"{prefix}inflight:{made['id']}"   # the key's requests in flight (infra/inflight_redis.py)
    payload = json.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]}).encode()
    payload += b" " * (2000 - len(payload))

    async def go():
        # the holder: headers promising a 2000-byte body, which is sent after the six refusals
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(chat_head(key, 2000))
        await writer.drain()
        with redis.Redis.from_url(redis_url) as r:
            deadline = time.monotonic() + 10   # until the holder's request has the key's slot
            while r.zcard(in_flight) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(timeout=10) as client:
            body = {"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]}
            refused = []
            for _ in range(6):   # new connections: the kernel spreads them over both workers
                async with httpx.AsyncClient(timeout=10) as one:
                    r = await one.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                       json=body)
                refused.append(r.status_code)
            writer.write(payload)
            await writer.drain()
            async with asyncio.timeout(10):
                held = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            after = await client.post(gw.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                      json=body)
        return refused, held, after

    refused, held, after = asyncio.run(go())
    assert refused == [429] * 6
    assert held.startswith(b"HTTP/1.1 200 "), held
    assert after.status_code == 200, after.text


class _Transport:
    """What the coalescing writer passes on, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, lines) -> None:
        self.calls.append(("writelines", tuple(lines)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_a_responses_head_and_body_go_out_in_one_write():
    """The head (uvicorn's first write of a request's cycle) waits for the body written in the same
    turn of the event loop, and both go out together; later writes go straight through."""
    from aicredits.api.connections import _Coalescing
    t = _Transport()
    w = _Coalescing(t)
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.calls == []
    w.write(b"{}")
    w.write(b"more")
    assert t.calls == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"{}")), ("write", b"more")]
    await asyncio.sleep(0)   # the cancelled flush writes nothing more
    assert len(t.calls) == 2 and w.get_extra_info("peername") == "info:peername"


async def test_a_head_whose_body_does_not_follow_goes_out_at_the_end_of_the_turn():
    """A stream's head, its first event not there yet, is not held past the loop's turn; a close
    writes a held head first."""
    from aicredits.api.connections import _Coalescing
    t = _Transport()
    w = _Coalescing(t)
    w.write(b"HEAD")
    await asyncio.sleep(0)
    assert t.calls == [("write", b"HEAD")]
    w.write(b"event")
    assert t.calls[-1] == ("write", b"event")
    t2 = _Transport()
    w2 = _Coalescing(t2)
    w2.write(b"HEAD")
    w2.close()
    assert t2.calls == [("write", b"HEAD"), ("close", None)]
    await asyncio.sleep(0)
    assert len(t2.calls) == 2
    t3 = _Transport()   # a connection closing already: the held head is dropped with it
    w3 = _Coalescing(t3)
    w3.write(b"HEAD")
    t3.closing = True
    await asyncio.sleep(0)
    assert t3.calls == []
