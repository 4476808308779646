"""The fake collector, proven with OpenTelemetry's own OTLP/HTTP exporter: what the SDK sends is
what the fake decodes (names, ids, parentage, kinds, typed attributes, status, resource)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.fakes.otlp_collector import FakeCollector


@pytest.fixture
def collector():
    c = FakeCollector().start()
    yield c
    c.stop()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_the_sdk_exporter_is_decoded(collector, compression):
    from opentelemetry.exporter.otlp.proto.http import Compression

    provider = TracerProvider(resource=Resource.create({"service.name": "fake-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=collector.base_url + "/v1/traces", headers={"x-api-key": "k1"},
        compression=Compression.Gzip if compression else Compression.NoCompression)))
    tracer = provider.get_tracer("test")
    with (tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"n": 7, "s": "x", "f": 0.5})
          as outer, tracer.start_as_current_span("inner") as inner):
        inner.set_status(Status(StatusCode.ERROR))
    provider.shutdown()

    spans = collector.wait_for(lambda s: len(s) == 2)
    by_name = {s.name: s for s in spans}
    o, i = by_name["outer"], by_name["inner"]
    assert o.trace_id == i.trace_id == format(outer.get_span_context().trace_id, "032x")
    assert o.span_id == format(outer.get_span_context().span_id, "016x")
    assert i.parent_span_id == o.span_id and o.parent_span_id == ""
    assert (o.kind, i.kind) == ("SPAN_KIND_SERVER", "SPAN_KIND_INTERNAL")
    assert o.attributes == {"n": 7, "s": "x", "f": 0.5}
    assert i.status == "STATUS_CODE_ERROR"
    assert o.resource["service.name"] == "fake-test"
    assert collector.exports[0]["x-api-key"] == "k1"
    assert inner.get_span_context().span_id
