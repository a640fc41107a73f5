"""The server span of every gRPC call, made with as little work as a span can cost.

OpenTelemetry's own server interceptor (``opentelemetry-instrumentation-grpc``) costs a
node about 85 µs of CPU per call: it builds the metadata into dicts twice, parses the
peer address, runs the global propagator (trace context and baggage, by regex), wraps
the servicer context in an object that every ``abort`` and ``set_code`` goes through, and
nests three context managers. A hold costs the node about 700 µs, so that alone broke
the budget tracing has (ARCHITECTURE.md, *Traces*: at most 5 % of holds/s). This one
does only what a trace needs: it continues the caller's ``traceparent`` (parsed by
hand; ``tracestate`` is not carried), names the span by the method as OpenTelemetry
does (``/package.Service/Method``), keeps the RPC semantic-convention attributes
(computed once per method), and marks the span an error with the status the call ended
with: about half the cost (BENCHMARKS.md, *The cost of tracing*). Client spans stay
OpenTelemetry's (``tracing.traced_channel``): the caller's side is not a server's hot path.

Every Ridgeline RPC is unary-unary; a streaming method would pass through untraced, and
the first one added should get its span here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_VERSION = "00"


class ServerSpans(grpc.ServerInterceptor):
    """Wraps each unary call in a SERVER span that continues the caller's trace."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._attributes: dict[str, dict[str, str | int]] = {}

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        method: str = details.method  # type: ignore[attr-defined]
        attributes = self._attributes.get(method) or self._attributes.setdefault(method, _rpc_attributes(method))
        tracer = self._tracer

        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            parent = _remote_parent(context.invocation_metadata())
            span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                response = behavior(request, context)
            except BaseException:
                # An abort raises; the status it set is the call's. Anything else is an
                # exception grpc turns into UNKNOWN.
                _end_with(span, context.code() or grpc.StatusCode.UNKNOWN)
                raise
            else:
                _end_with(span, context.code() or grpc.StatusCode.OK)
                return response
            finally:
                otel_context.detach(token)

        return handler._replace(unary_unary=traced)  # type: ignore[attr-defined]


def _rpc_attributes(method: str) -> dict[str, str | int]:
    """The span's attributes, with the status code of a call that succeeds: the common
    case pays for no attribute set after the start."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "rpc.grpc.status_code": grpc.StatusCode.OK.value[0]}


def _end_with(span: trace.Span, code: grpc.StatusCode) -> None:
    if code is not grpc.StatusCode.OK:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def _remote_parent(metadata: Any) -> otel_context.Context | None:
    """The context of the caller's span from its ``traceparent`` (W3C trace context), or
    None (a new trace) when the call carries none or a malformed one."""
    for key, value in metadata or ():
        if key == "traceparent":
            return _parse_traceparent(value)
    return None


def _parse_traceparent(value: str) -> otel_context.Context | None:
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != _VERSION or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(remote))
