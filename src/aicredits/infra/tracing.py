"""OpenTelemetry traces (opentelemetry-sdk, exported over OTLP/HTTP): the gateway's `Tracing`
(aicredits/telemetry.py). Built only when AICREDITS_OTEL_ENDPOINT is set; docs/operations.md
("Traces") describes the spans.

One span per request (kind SERVER), continuing the client's W3C `traceparent` when it sends one,
with child spans for auth, the hold, each upstream attempt (kind CLIENT, GenAI attributes) and the
settle. The request span gets the call's GenAI usage and its cost when the call settles. The
trace context goes to a provider only with AICREDITS_OTEL_PROPAGATE_UPSTREAM=true.

The provider of spans is this gateway's own (never the process-global one), so two gateways in
one process, or a host application's own tracing, do not mix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from starlette.types import Message, Receive, Scope, Send

from aicredits import __version__
from aicredits.domain.money import format_inr
from aicredits.telemetry import UPSTREAM_HEADERS, current_request

# gen_ai.system / gen_ai.provider.name of the built-in providers (the GenAI semantic conventions'
# names); any other provider is named as configured
GENAI_SYSTEMS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "azure": "azure.ai.openai"}
_REQUEST_SPAN: ContextVar[Span | None] = ContextVar("aicredits_request_span", default=None)


class TracingUnavailable(RuntimeError):
    pass


def parse_headers(text: str | None) -> dict[str, str]:
    """'name=value,name2=value2' (OTLP's header list) -> a dict."""
    out = {}
    for part in (text or "").split(","):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            out[name.strip().lower()] = value.strip()
    return out


def traces_url(endpoint: str) -> str:
    """The collector's OTLP/HTTP base URL -> its traces path (kept when already given)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def system_of(provider: str) -> str:
    return GENAI_SYSTEMS.get(provider, provider)


class OtelTracing:
    def __init__(self, endpoint: str, *, headers: str | None = None, service_name: str = "aicredits",
                 sample_ratio: float = 1.0, propagate_upstream: bool = False) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingUnavailable(
                "AICREDITS_OTEL_ENDPOINT is set but the OTLP exporter is not installed: "
                "pip install 'aicredits[otlp]' (or unset AICREDITS_OTEL_ENDPOINT)") from None
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
        self._provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_url(endpoint), headers=parse_headers(headers))))
        self._tracer = self._provider.get_tracer("aicredits", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._propagate = propagate_upstream

    async def serve(self, scope: Scope, receive: Receive, send: Send, handle: Callable[..., Awaitable[None]],
                    route: str) -> None:
        """Answer one request inside its span (the client's trace continued when it sent one)."""
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        parent = self._propagator.extract(carrier, context=Context())   # never a span of the caller's task
        method = scope["method"]
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        name = f"{method} {route}" if route.startswith("/") else method
        with self._tracer.start_as_current_span(
                name, context=parent, kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "http.route": route, "url.path": scope["path"]}) as span:
            token = _REQUEST_SPAN.set(span)
            try:
                await handle(scope, receive, send_status)
            finally:
                _REQUEST_SPAN.reset(token)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                state = current_request()
                if state is not None and state.key_id:
                    span.set_attribute("aicredits.key_id", state.key_id)

    # ------------------------------------------------------------------ the Tracing interface
    def span(self, name: str) -> AbstractContextManager[Span]:
        return self._tracer.start_as_current_span(name)

    @contextmanager
    def attempt(self, operation: str, system: str, model: str, deployment: str) -> Iterator[Span]:
        attributes = {"gen_ai.operation.name": operation, "gen_ai.system": system_of(system),
                      "gen_ai.provider.name": system_of(system), "gen_ai.request.model": model,
                      "aicredits.deployment": deployment}
        with self._tracer.start_as_current_span(f"{operation} {model}", kind=SpanKind.CLIENT,
                                                attributes=attributes) as span:
            if not self._propagate:
                yield span
                return
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            token = UPSTREAM_HEADERS.set(carrier)
            try:
                yield span
            finally:
                UPSTREAM_HEADERS.reset(token)

    def call_done(self, system: str, model: str, input_tokens: int, output_tokens: int, charged_micros: int,
                  request_id: str) -> None:
        attributes: dict[str, AttributeValue] = {"gen_ai.system": system_of(system), "gen_ai.provider.name": system_of(system),
                      "gen_ai.request.model": model, "gen_ai.usage.input_tokens": input_tokens,
                      "gen_ai.usage.output_tokens": output_tokens, "aicredits.cost_micros": charged_micros,
                      "aicredits.cost_inr": format_inr(charged_micros), "aicredits.request_id": request_id}
        trace.get_current_span().set_attributes(attributes)   # the settle's span
        request_span = _REQUEST_SPAN.get()
        if request_span is not None:
            request_span.set_attributes(attributes)

    def shutdown(self) -> None:
        """Export what is still buffered (blocks up to the exporter's timeout)."""
        self._provider.shutdown()
