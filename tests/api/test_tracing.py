"""OpenTelemetry traces, received by a fake OTLP/HTTP collector (a real HTTP server decoding the
protobuf exports): one span per request continuing the client's traceparent, child spans for
auth, hold, each upstream attempt and settle with the GenAI attributes and the cost; no trace
header reaches the provider unless AICREDITS_OTEL_PROPAGATE_UPSTREAM is on; nothing when off."""

from __future__ import annotations

import uuid

import pytest

from aicredits.telemetry import NO_TRACING
from tests.fakes.openai_upstream import Scenario
from tests.fakes.otlp_collector import FakeCollector, ReceivedSpan
from tests.inproc import InProcessGateway, sse_data

ROUTE = "/v1/chat/completions"
MODEL = "openai/gpt-4o-mini"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
TRACE_HEADERS = ("traceparent", "tracestate")


@pytest.fixture(scope="module")
def collector():
    c = FakeCollector().start()
    yield c
    c.stop()


def client_trace() -> tuple[str, str, str]:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def gateway(tmp_path, upstream, collector, **env) -> InProcessGateway:
    return InProcessGateway(tmp_path, {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": upstream.api_key,
                                       "AICREDITS_OTEL_ENDPOINT": collector.base_url,
                                       "AICREDITS_OTEL_SERVICE_NAME": "aicredits-test", **env}).start()


def trace(collector: FakeCollector, trace_id: str) -> list[ReceivedSpan]:
    spans = collector.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == "SPAN_KIND_SERVER" for x in s))
    return [s for s in spans if s.trace_id == trace_id]


def test_a_call_is_one_span_with_its_children(tmp_path, upstream, collector):
    gw = gateway(tmp_path, upstream, collector, AICREDITS_RETRIES="1", AICREDITS_RETRY_BASE_DELAY="0.01")
    trace_id, parent, traceparent = client_trace()
    rid = "trace-" + uuid.uuid4().hex
    try:
        key = gw.create_key()
        upstream.enqueue(Scenario(status=500))   # the first attempt fails; the retry answers
        r = gw.post(ROUTE, key, json=CHAT, headers={"traceparent": traceparent, "tracestate": "vendor=abc",
                                                    "x-request-id": rid})
        assert r.status_code == 200, r.text
        row = gw.usage_row(key, rid)
    finally:
        gw.stop()   # exports what is buffered
    spans = trace(collector, trace_id)

    root = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    assert len(root) == 1
    root = root[0]
    assert root.name == f"POST {ROUTE}"
    assert root.parent_span_id == parent   # the client's trace continued
    assert root.resource["service.name"] == "aicredits-test"
    a = root.attributes
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == MODEL
    assert a["gen_ai.usage.input_tokens"] == row["prompt_tokens"] == 19
    assert a["gen_ai.usage.output_tokens"] == row["completion_tokens"] == 9
    assert a["aicredits.cost_micros"] == row["cost"] > 0
    assert a["aicredits.request_id"] == rid
    assert a["aicredits.key_id"] == key["id"]

    children = [s for s in spans if s is not root]
    assert all(s.parent_span_id == root.span_id for s in children), [(s.name, s.parent_span_id) for s in children]
    assert sorted(s.name for s in children) == ["auth", "chat gpt-4o-mini", "chat gpt-4o-mini", "hold", "settle"]
    attempts = sorted((s for s in children if s.kind == "SPAN_KIND_CLIENT"), key=lambda s: s.start_ns)
    assert [s.status for s in attempts] == ["STATUS_CODE_ERROR", "STATUS_CODE_UNSET"]
    assert attempts[0].events == ["exception"] and attempts[1].events == []
    for s in attempts:
        assert s.attributes["gen_ai.operation.name"] == "chat"
        assert s.attributes["gen_ai.system"] == "openai"
        assert s.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert s.attributes["aicredits.deployment"] == "openai:gpt-4o-mini"
    settle = next(s for s in children if s.name == "settle")
    assert settle.attributes["aicredits.cost_micros"] == row["cost"]
    assert key["key"] not in repr(spans)   # the key's id, never the key

    sent = upstream.chat_requests()
    assert len(sent) == 2
    assert not [h for r in sent for h in r.headers if h in TRACE_HEADERS]   # the client's trace stays here


def test_the_trace_reaches_the_provider_only_when_configured(tmp_path, upstream, collector):
    gw = gateway(tmp_path, upstream, collector, AICREDITS_OTEL_PROPAGATE_UPSTREAM="true",
                 AICREDITS_OTEL_SAMPLE_RATIO="0")
    trace_id, _, traceparent = client_trace()
    try:
        key = gw.create_key()
        assert gw.post(ROUTE, key, json=CHAT).status_code == 200   # a new trace: ratio 0, not kept
        upstream.enqueue(Scenario(prompt_tokens=30, completion_tokens=4))
        r = gw.post(ROUTE, key, json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
                    headers={"traceparent": traceparent})
        assert r.status_code == 200 and sse_data(r.text)[-1] == "[DONE]"
    finally:
        gw.stop()
    spans = trace(collector, trace_id)
    attempt = next(s for s in spans if s.kind == "SPAN_KIND_CLIENT")
    root = next(s for s in spans if s.kind == "SPAN_KIND_SERVER")
    assert (root.attributes["gen_ai.usage.input_tokens"], root.attributes["gen_ai.usage.output_tokens"]) == (30, 4)
    unsampled, sampled = upstream.chat_requests()
    assert sampled.headers["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"   # the attempt's span
    assert int(unsampled.headers["traceparent"][-2:], 16) & 1 == 0   # not sampled, and said so
    assert "tracestate" not in sampled.headers
    assert {s.trace_id for s in collector.spans} >= {trace_id}
    assert not [s for s in collector.spans if s.trace_id == unsampled.headers["traceparent"][3:35]]


def test_tracing_is_off_unless_configured(tmp_path, upstream):
    gw = InProcessGateway(tmp_path, {"OPENAI_BASE_URL": upstream.base_url,
                                     "OPENAI_API_KEY": upstream.api_key}).start()
    try:
        assert gw.app.services.tracing is NO_TRACING
        assert gw.app.services.metering.tracing is NO_TRACING and gw.app.services.keys.tracing is NO_TRACING
        # one shared empty context for every span: no span object is made per call
        assert NO_TRACING.span("auth") is NO_TRACING.attempt("chat", "openai", "m", "d") is NO_TRACING.span("x")
        _, _, traceparent = client_trace()
        r = gw.post(ROUTE, gw.create_key(), json=CHAT, headers={"traceparent": traceparent})
        assert r.status_code == 200
    finally:
        gw.stop()
    assert not [h for r in upstream.chat_requests() for h in r.headers if h in TRACE_HEADERS]
