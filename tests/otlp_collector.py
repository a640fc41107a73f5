"""Follow one trace across processes: every process a test starts (nodes, the coordinator,
the gateway, this one) exports its spans over real OTLP/gRPC to one receiver
(``deploy/run/otlp_receiver.py``), as they would to an OpenTelemetry Collector, so a trace
assembled there crossed every process boundary for real. :func:`exporting_to` points this
process and its children at it, with a short batch delay so the spans arrive in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Set
from contextlib import contextmanager

import pytest

from ridgeline import tracing
from ridgeline.deploy.run.otlp_receiver import OtlpReceiver, ReceivedSpan


class Collector:
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def spans(self) -> list[ReceivedSpan]:
        return self._receiver.spans()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self._receiver.spans() if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, names: Set[str | tuple[str, str]], timeout_seconds: float = 20.0) -> list[ReceivedSpan]:
        """The trace's spans once every name in ``names`` arrived (the exporters batch); a
        ``(service, name)`` pair waits for that service's span of the name, since a client's
        span and its server's share a name and each process exports on its own schedule."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            spans = self.trace(trace_id)
            missing = names - {s.name for s in spans} - {(s.service, s.name) for s in spans}
            if not missing:
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id} lacks {sorted(missing)} after {timeout_seconds} s; it has {sorted({(s.service, s.name) for s in spans})}")
            time.sleep(0.1)


@contextmanager
def exporting_to(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[Collector]:
    """A receiver, with this process tracing to it as ``service`` and the processes it
    starts from now on too (the environment); tracing is off again afterwards."""
    receiver = OtlpReceiver(keep_spans=True).start()
    monkeypatch.setenv(tracing.ENDPOINT_VARIABLE, receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    try:
        assert tracing.configure(service), "tracing turns on when OTEL_EXPORTER_OTLP_ENDPOINT is set"
        yield Collector(receiver)
    finally:
        tracing.disable()
        receiver.stop()
