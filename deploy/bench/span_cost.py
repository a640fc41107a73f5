"""What one traced call costs the server, measured in this process, beside the same call untraced.

``bench holds --traced`` prices tracing end to end (holds/s with and without), but on a
shared 2-core machine the rates of two phases swing by more than the 5 % it looks for.
This prices the part tracing adds, alone: a PlaceHold-shaped call through the node's
server-span interceptor (``ridgeline.server_spans``) with a real tracer provider, batch
processor and no-op exporter (what ``OTEL_TRACES_EXPORTER=none`` configures), against the
same handler called bare, alternating, in CPU time of this one thread. Set against the
node's CPU per hold of the same run, it says what share of the node tracing takes,
however busy the machine's other cores are.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ridgeline.server_spans import ServerSpans
from ridgeline.tracing import DroppedSpans

_METHOD = "/ridgeline.v1.BookingService/PlaceHold"
_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _CallContext:
    """What the interceptor reads of a servicer context: the caller's metadata and the
    status the call ended with (a desk's PlaceHold carries its token and a traceparent)."""

    def __init__(self) -> None:
        self._metadata = (("user-agent", "grpc-python/1.85.3"), ("authorization", "Bearer desk"), ("traceparent", _TRACEPARENT))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def code(self) -> grpc.StatusCode | None:
        return None


def traced_call_cost_us(*, calls: int = 5000, rounds: int = 7) -> float:
    """Median over ``rounds`` of the extra CPU µs a traced call costs over a bare one."""
    provider = TracerProvider()
    processor = BatchSpanProcessor(DroppedSpans(), max_queue_size=calls * 2)
    provider.add_span_processor(processor)
    try:
        handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        details = _Details(_METHOD, ())
        interceptor = ServerSpans(processor, provider.resource, InstrumentationScope("ridgeline-bench"))

        def traced() -> Any:
            return interceptor.intercept_service(lambda _: handler, details)

        def bare() -> Any:
            return handler

        extra = [_cpu_per_call(traced, calls) - _cpu_per_call(bare, calls) for _ in range(rounds)]
        return statistics.median(extra)
    finally:
        provider.shutdown()


def _cpu_per_call(resolve: Callable[[], Any], calls: int) -> float:
    """µs of this thread's CPU per call, resolving the handler per call as grpc does."""
    context = _CallContext()
    started = time.thread_time()
    for _ in range(calls):
        resolve().unary_unary(b"", context)
    return (time.thread_time() - started) / calls * 1e6
