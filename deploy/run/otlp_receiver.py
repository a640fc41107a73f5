"""An OTLP/gRPC trace receiver on a loopback port: where a benchmark or a test sends spans.

``ridgeline bench holds --traced`` points its traced node here to price tracing with a
real exporter at work (batching, serialising, sending) but nothing stored; the tests keep
the spans to follow one trace across processes. It speaks plaintext on loopback, like a
collector sidecar; it is no production collector (use the OpenTelemetry Collector).
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str | int]
    #: OTLP's status code name: STATUS_CODE_UNSET, STATUS_CODE_OK or STATUS_CODE_ERROR.
    status_code: str


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Counts every span it receives; keeps them too when ``keep_spans``."""

    def __init__(self, *, keep_spans: bool) -> None:
        self._keep = keep_spans
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.count = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(4, thread_name_prefix="otlp-receiver"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (with ``OTEL_EXPORTER_OTLP_INSECURE=true``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0)

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        received = [
            ReceivedSpan(
                _service(resource_spans), span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                {a.key: _scalar(a.value) for a in span.attributes}, trace_pb2.Status.StatusCode.Name(span.status.code),
            )
            for resource_spans in request.resource_spans
            for scope in resource_spans.scope_spans
            for span in scope.spans
        ] if self._keep else []
        count = sum(len(scope.spans) for resource_spans in request.resource_spans for scope in resource_spans.scope_spans)
        with self._lock:
            self.count += count
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)


def _scalar(value: common_pb2.AnyValue) -> str | int:
    """A string or integer attribute's value (the kinds Ridgeline's spans set)."""
    return value.int_value if value.WhichOneof("value") == "int_value" else value.string_value


def _service(resource_spans: object) -> str:
    attributes = resource_spans.resource.attributes  # type: ignore[attr-defined]
    return next((a.value.string_value for a in attributes if a.key == "service.name"), "")
