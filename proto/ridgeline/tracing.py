"""OpenTelemetry traces across Ridgeline's hops: one booking or trek, one trace.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard OTLP variable; the
exporter reads the rest of its settings, headers and protocol, from the standard
variables too) or ``OTEL_TRACES_EXPORTER`` names ``console`` (spans printed, to look at
one process) or ``none`` (spans made and dropped: what a benchmark prices, the
instrumentation without an exporter's work). Off means no interceptor is installed and
no span object is made: the hot path costs what it cost before, not "a no-op tracer per
call". On, every process that calls :func:`configure` at start exports its spans in
batches (a background thread, never on the call's path), counts them in
``ridgeline_trace_spans_exported_total``, and:

- every gRPC server gets Ridgeline's lean server interceptor (:mod:`server_spans`, a
  fifth of OpenTelemetry's own interceptor per call) and every channel made through
  ``trust.credentials.Transport`` OpenTelemetry's client interceptor, so W3C trace
  context rides in gRPC metadata on every hop (client → node, coordinator → legs,
  node → coordinator);
- HTTP calls to the payment gateway carry ``traceparent`` (:func:`inject`) and the
  gateway continues the trace (:func:`extract`);
- a Book stores its ``traceparent`` with the booking's settlement row, so the settle flow,
  running later in a batch, continues each booking's own trace
  (:func:`span_continuing`), and GetBooking shows its trace id.

This module lives in the root package because every room uses it and it depends on
none of them.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter

from ridgeline.server_spans import ServerSpans

P = ParamSpec("P")
T = TypeVar("T")

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
EXPORTER_VARIABLE = "OTEL_TRACES_EXPORTER"
_TRACER_NAME = "ridgeline"
_W3C = TraceContextTextMapPropagator()

SPANS_EXPORTED = Counter("ridgeline_trace_spans_exported_total", "Spans this process handed to its trace exporter (dropped when OTEL_TRACES_EXPORTER=none).")

_provider: TracerProvider | None = None
#: The provider's span processor, which the server spans are handed to directly.
_processor: BatchSpanProcessor | SimpleSpanProcessor | None = None


def configure(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Turns tracing on for this process when the environment asks for it (see the module
    docstring; batched export) or ``exporter`` is given (tests: every span handed over at
    once); returns whether it is on. Call once at process start, before servers and
    channels are made: those made before stay untraced."""
    global _provider, _processor
    if exporter is None:
        chosen = _exporter_from_environment()
        if chosen is None:
            return _provider is not None
        processor: BatchSpanProcessor | SimpleSpanProcessor = BatchSpanProcessor(_Counted(chosen))
    else:
        processor = SimpleSpanProcessor(_Counted(exporter))
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    if _provider is not None:
        _provider.shutdown()
    _provider, _processor = provider, processor
    return True


def _exporter_from_environment() -> SpanExporter | None:
    """The exporter ``OTEL_TRACES_EXPORTER`` names (OTLP by default, when an endpoint is
    set), None when tracing stays off; a name this process does not know is refused at
    start rather than traced nowhere."""
    name = os.environ.get(EXPORTER_VARIABLE, "").strip().lower() or "otlp"
    if name == "otlp":
        if not os.environ.get(ENDPOINT_VARIABLE):
            return None
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    if name == "none":
        return DroppedSpans()
    raise ValueError(f"{EXPORTER_VARIABLE}={name!r} is not an exporter Ridgeline has: use otlp (with {ENDPOINT_VARIABLE}), console or none")


class _Counted(SpanExporter):
    """Counts what it hands to ``inner``: the proof, from /metrics, that tracing is on."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        SPANS_EXPORTED.inc(len(spans))
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class DroppedSpans(SpanExporter):
    """``OTEL_TRACES_EXPORTER=none``: every span made, none sent anywhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def disable() -> None:
    """Turns tracing off again (tests), flushing what was recorded."""
    global _provider, _processor
    if _provider is not None:
        _provider.shutdown()
    _provider = _processor = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> trace.Tracer:
    """Ridgeline's tracer: the configured provider's, else OpenTelemetry's no-op one."""
    return _provider.get_tracer(_TRACER_NAME) if _provider is not None else trace.NoOpTracer()


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """[the server-span interceptor] when tracing is on, else nothing. Put it first, so the
    span covers authentication and the status every refusal ends with."""
    if _provider is None or _processor is None:
        return []
    return [ServerSpans(_processor, _provider.resource, InstrumentationScope(_TRACER_NAME))]


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with OpenTelemetry's client interceptor when tracing is on (it starts a
    client span and puts the trace context in the call's metadata)."""
    if _provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor, grpcext

    return grpcext.intercept_channel(channel, client_interceptor(tracer_provider=_provider))


def inject(headers: MutableMapping[str, str]) -> None:
    """Adds ``traceparent`` (and ``tracestate``) of the current span to HTTP ``headers``."""
    if _provider is not None:
        propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> otel_context.Context:
    """The trace context an incoming HTTP request carries (an empty context when none)."""
    return propagate.extract(headers)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, to store with work done later ("" when
    tracing is off or no span is recording)."""
    if _provider is None or not trace.get_current_span().get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent", "")


def trace_id_of(traceparent: str) -> str:
    """The 32-hex trace id inside a ``traceparent`` ("" when it is not one)."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


@contextmanager
def span_continuing(name: str, traceparent: str, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
    """A span that continues the trace ``traceparent`` names (stored by an earlier call),
    current for the block; nothing when tracing is off or there is no trace to continue."""
    if _provider is None or not traceparent:
        yield
        return
    parent = _W3C.extract({"traceparent": traceparent})
    with tracer().start_as_current_span(name, context=parent, attributes=dict(attributes or {})):
        yield


@contextmanager
def span(name: str, context: otel_context.Context | None = None, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
    """A span current for the block (a child of ``context``, else of the current span);
    nothing when tracing is off."""
    if _provider is None:
        yield
        return
    with tracer().start_as_current_span(name, context=context, attributes=dict(attributes or {})):
        yield


def pool(workers: int, *, thread_name_prefix: str) -> ThreadPoolExecutor:
    """A thread pool for work handed over by a traced call: a :class:`ContextPool` when
    tracing is on, a plain pool (no context copy per task) when it is off."""
    kind = ContextPool if _provider is not None else ThreadPoolExecutor
    return kind(workers, thread_name_prefix=thread_name_prefix)


class ContextPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context (``contextvars``), so work
    handed to a pool stays in the trace of the call that handed it over (a trek's drive,
    its leg calls). The copy is what ``asyncio.to_thread`` does; it costs a dict copy."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)  # type: ignore[arg-type]
