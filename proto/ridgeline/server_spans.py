"""The server span of every gRPC call, made with as little work as a span can cost.

OpenTelemetry's own server interceptor (``opentelemetry-instrumentation-grpc``) costs a
node about 85 µs of CPU per call: it builds the metadata into dicts twice, parses the
peer address, runs the global propagator (trace context and baggage, by regex), wraps
the servicer context in an object that every ``abort`` and ``set_code`` goes through, and
nests three context managers. Even the SDK's bare ``start_span``/``end`` costs about
40 µs: a sampler call, attributes copied into a validated, bounded mapping, a lock per
span, ``on_start`` on every processor. A hold costs the node about 700 µs, and tracing
may take at most 5 % of holds/s (ARCHITECTURE.md, *Traces*).

So this interceptor does not run the SDK's span machinery at all. On the call's path it
continues the caller's ``traceparent`` (parsed by hand; ``tracestate`` is not carried),
makes the span's ids, and makes the span current as a ``NonRecordingSpan`` of that
context, which is all that children and :func:`tracing.current_traceparent` need. When
the call ends it hands the span processor a finished ``ReadableSpan`` (the object the
SDK's own ``Span.end`` hands it): named by the method as OpenTelemetry names it
(``/package.Service/Method``), with the RPC semantic-convention attributes (computed
once per method) and the status the call ended with. About 17 µs per call: a fifth of
OpenTelemetry's interceptor, under half the SDK's bare span (BENCHMARKS.md, *The cost of
tracing*).

Sampling is the SDK's default, parent-based and always on: a span whose caller's trace
is not sampled is made current (so its children are not sampled either) and not
recorded. ``OTEL_TRACES_SAMPLER`` does not reach these spans; Ridgeline does not trade
traces for speed. Client spans stay OpenTelemetry's (``tracing.traced_channel``): the
caller's side is not a server's hot path.

Every Ridgeline RPC is unary-unary; a streaming method would pass through untraced, and
the first one added should get its span here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_VERSION = "00"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_OK = grpc.StatusCode.OK
_random_bits = random.getrandbits
_now_ns = time.time_ns


class ServerSpans(grpc.ServerInterceptor):
    """Wraps each unary call in a SERVER span that continues the caller's trace, and hands
    it to ``processor`` (the tracer provider's batch processor) when the call ends."""

    def __init__(self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope) -> None:
        self._processor = processor
        self._resource = resource
        self._scope = scope
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
        on_end, resource, scope = self._processor.on_end, self._resource, self._scope

        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            parent = _remote_parent(context.invocation_metadata())
            if parent is None:
                trace_id, flags = _random_bits(128) or 1, _SAMPLED
            else:
                trace_id, flags = parent.trace_id, parent.trace_flags
            own = SpanContext(trace_id, _random_bits(64) or 1, False, flags)
            token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(own)))
            started = _now_ns()
            # An abort raises with the status it set; any other exception grpc turns into
            # UNKNOWN, which is what the span keeps when the call set no code.
            code = grpc.StatusCode.UNKNOWN
            try:
                response = behavior(request, context)
                code = _OK
                return response
            finally:
                otel_context.detach(token)
                if flags.sampled:
                    ended, status = _outcome(attributes, context.code() or code)
                    on_end(ReadableSpan(
                        method, own, parent, resource, ended, kind=SpanKind.SERVER, status=status,
                        start_time=started, end_time=_now_ns(), instrumentation_scope=scope,
                    ))  # fmt: skip

        return handler._replace(unary_unary=traced)  # type: ignore[attr-defined]


def _rpc_attributes(method: str) -> dict[str, str | int]:
    """The span's attributes, with the status code of a call that succeeds: the common
    case builds no attributes per call."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "rpc.grpc.status_code": _OK.value[0]}


def _outcome(attributes: dict[str, str | int], code: grpc.StatusCode) -> tuple[dict[str, str | int], Status]:
    """The attributes and status of a span that ended with ``code``: an error for anything
    but OK, as OpenTelemetry's gRPC instrumentation marks server spans."""
    if code is _OK:
        return attributes, _UNSET
    return {**attributes, "rpc.grpc.status_code": code.value[0]}, Status(StatusCode.ERROR, code.name)


def _remote_parent(metadata: Any) -> SpanContext | None:
    """The caller's span context from its ``traceparent`` (W3C trace context), or None
    (a new trace) when the call carries none or a malformed one."""
    for key, value in metadata or ():
        if key == "traceparent":
            return _parse_traceparent(value)
    return None


def _parse_traceparent(value: str) -> SpanContext | None:
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != _VERSION or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
