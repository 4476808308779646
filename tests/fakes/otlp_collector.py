"""A fake OpenTelemetry collector for the aicredits test suite: a real HTTP server (aiohttp.web) on
127.0.0.1 speaking OTLP/HTTP with protobuf bodies, as the OTLP specification describes it.

``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` (a gzip or deflate
content-encoding is undone by aiohttp) is decoded as an ``ExportTraceServiceRequest``
(opentelemetry-proto's generated classes) and answered 200 with an empty
``ExportTraceServiceResponse``; any other content type is 415, any other path 404. Every span
received is kept as a :class:`ReceivedSpan`, with the headers of the export that carried it.

Usage::

    collector = FakeCollector().start()
    ... AICREDITS_OTEL_ENDPOINT=collector.base_url ...
    collector.wait_for(lambda spans: any(s.name == "settle" for s in spans))
    collector.stop()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    kind: str                     # SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL, ...
    trace_id: str                 # 32 hex digits
    span_id: str                  # 16 hex digits
    parent_span_id: str           # "" for a root span
    attributes: dict[str, Any]
    status: str                   # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR
    resource: dict[str, Any]
    scope: str
    events: list[str] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0


class FakeCollector:
    def __init__(self) -> None:
        self.port = 0
        self.base_url = ""
        self.spans: list[ReceivedSpan] = []
        self.exports: list[dict[str, str]] = []   # the headers of each export request
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
        self._thread = threading.Thread(target=run, name="fake-otlp-collector", daemon=True)
        self._thread.start()
        ready.wait()
        self.port = asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def _astart(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._loop = None

    # ------------------------------------------------------------------ the OTLP/HTTP endpoint
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/traces":
            return web.Response(status=404, text="not found")
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text="OTLP/HTTP bodies here are protobuf")
        raw = await request.read()   # aiohttp undoes a gzip or deflate content-encoding
        export = ExportTraceServiceRequest()
        export.ParseFromString(raw)
        received = []
        for rs in export.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    received.append(ReceivedSpan(
                        name=sp.name, kind=Span.SpanKind.Name(sp.kind), trace_id=sp.trace_id.hex(),
                        span_id=sp.span_id.hex(), parent_span_id=sp.parent_span_id.hex(),
                        attributes={kv.key: any_value(kv.value) for kv in sp.attributes},
                        status=Status.StatusCode.Name(sp.status.code), resource=resource, scope=ss.scope.name,
                        events=[e.name for e in sp.events], start_ns=sp.start_time_unix_nano,
                        end_ns=sp.end_time_unix_nano))
        with self._lock:
            self.spans.extend(received)
            self.exports.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(status=200, body=ExportTraceServiceResponse().SerializeToString(),
                            content_type=PROTOBUF)

    # ------------------------------------------------------------------ test-facing API
    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    def reset(self) -> None:
        with self._lock:
            self.spans.clear()
            self.exports.clear()
