"""The gateway's Prometheus metrics, served at ``/metrics`` like every Ridgeline process.

A drill that makes the provider slow, flaky or down should be visible from the provider's
side too: how many payment calls arrived, how each was answered, how long it took, which
faults were injected, the fault settings in force, and the requests refused before they
ran (by role and status, never by principal: bounded labels). The metrics live in the app's own
registry, so two gateways in one test process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ridgeline.deploy.payment_gateway.faults import FaultPlan, FaultSettings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics:
    """Counters and histograms of the ``/v1`` API, and gauges of the injected faults."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "ridgeline_gateway_requests", "Payment API requests by operation and HTTP status answered.", ["operation", "status"], registry=self.registry
        )
        self._seconds = Histogram(
            "ridgeline_gateway_request_seconds",
            "Payment API request duration (injected latency included), by operation.",
            ["operation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self._faults = Counter(
            "ridgeline_gateway_injected_faults", "Faults injected into requests, by kind (fail_before, lost_reply, delay).", ["kind"], registry=self.registry
        )
        self._refusals = Counter(
            "ridgeline_gateway_refusals",
            "Requests refused before they ran, by the caller's role ('none' when unidentified) and HTTP status (401, 403).",
            ["role", "status"],
            registry=self.registry,
        )
        self._latency = Gauge("ridgeline_gateway_fault_latency_seconds", "Injected fixed delay per request.", registry=self.registry)
        self._error_rate = Gauge("ridgeline_gateway_fault_error_rate", "Share of requests refused with 503 before any work.", registry=self.registry)
        self._lost_reply_rate = Gauge("ridgeline_gateway_fault_lost_reply_rate", "Share of requests done, then answered 503.", registry=self.registry)
        self._outage = Gauge("ridgeline_gateway_fault_outage", "1 while every request is answered 503.", registry=self.registry)
        self.settings_changed(FaultSettings())

    def observe(self, operation: str, status: int, seconds: float) -> None:
        self._requests.labels(operation, str(status)).inc()
        self._seconds.labels(operation).observe(seconds)

    def refused(self, role: str, status: int) -> None:
        self._refusals.labels(role, str(status)).inc()

    def drawn(self, plan: FaultPlan) -> None:
        # A decline is drawn for every request but only bites a new charge: it shows as a 402.
        lost_reply = plan.lose_reply and not plan.fail_before
        for kind, drawn in (("fail_before", plan.fail_before), ("lost_reply", lost_reply), ("delay", plan.delay_seconds > 0)):
            if drawn:
                self._faults.labels(kind).inc()

    def settings_changed(self, settings: FaultSettings) -> None:
        self._latency.set(settings.latency_ms / 1000.0)
        self._error_rate.set(settings.error_rate)
        self._lost_reply_rate.set(settings.lost_reply_rate)
        self._outage.set(1 if settings.outage else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
