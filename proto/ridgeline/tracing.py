"""OpenTelemetry traces across Ridgeline's hops: one booking or trek, one trace.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard OTLP variable; the
exporter reads the rest of its settings, headers and protocol, from the standard
variables too). Off means no interceptor is installed and no span object is made: the
hot path costs what it cost before, not "a no-op tracer per call". On, every process
that calls :func:`configure` at start exports its spans in batches (a background
thread, never on the call's path) and:

- every gRPC server gets OpenTelemetry's server interceptor (:func:`server_interceptors`)
  and every channel made through ``trust.credentials.Transport`` its client interceptor,
  so W3C trace context rides in gRPC metadata on every hop (client → node, coordinator
  → legs, node → coordinator);
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
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

P = ParamSpec("P")
T = TypeVar("T")

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACER_NAME = "ridgeline"
_W3C = TraceContextTextMapPropagator()

_provider: TracerProvider | None = None


def configure(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Turns tracing on for this process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP,
    batched) or ``exporter`` is given (tests: every span handed over at once); returns
    whether it is on. Call once at process start, before servers and channels are made:
    those made before stay untraced."""
    global _provider
    if exporter is None and not os.environ.get(ENDPOINT_VARIABLE):
        return _provider is not None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor: BatchSpanProcessor | SimpleSpanProcessor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    if _provider is not None:
        _provider.shutdown()
    _provider = provider
    return True


def disable() -> None:
    """Turns tracing off again (tests), flushing what was recorded."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> trace.Tracer:
    """Ridgeline's tracer: the configured provider's, else OpenTelemetry's no-op one."""
    return _provider.get_tracer(_TRACER_NAME) if _provider is not None else trace.NoOpTracer()


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """[OpenTelemetry's server interceptor] when tracing is on, else nothing. Put it first,
    so the span covers authentication and the status every refusal ends with."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    return [server_interceptor(tracer_provider=_provider)]


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
