"""An OTLP trace receiver on a loopback port, for tests that follow one trace across processes.

Every process a test starts (nodes, the coordinator, the gateway, this one) exports its
spans over real OTLP/gRPC to it, as they would to an OpenTelemetry Collector, so a trace
assembled here crossed every process boundary for real. :func:`exporting_to` points this
process and its children at it, with a short batch delay so the spans arrive in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ridgeline import tracing


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    received.append(ReceivedSpan(service, span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), attributes))
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, names: set[str], timeout_seconds: float = 20.0) -> list[ReceivedSpan]:
        """The trace's spans once every name in ``names`` arrived (the exporters batch)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            spans = self.trace(trace_id)
            missing = names - {s.name for s in spans}
            if not missing:
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id} lacks {sorted(missing)} after {timeout_seconds} s; it has {sorted({(s.service, s.name) for s in spans})}")
            time.sleep(0.1)


@contextmanager
def exporting_to(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[Collector]:
    """A collector, with this process tracing to it as ``service`` and the processes it
    starts from now on too (the environment); tracing is off again afterwards."""
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv(tracing.ENDPOINT_VARIABLE, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    try:
        assert tracing.configure(service), "tracing turns on when OTEL_EXPORTER_OTLP_ENDPOINT is set"
        yield collector
    finally:
        tracing.disable()
        server.stop(0)
