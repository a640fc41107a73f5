"""Reading Prometheus endpoints for ``ridgeline status``: a few numbers per process.

Nodes announce their endpoint in ClusterInfo; the coordinator's is in the cluster file
(``[coordinator] metrics``); the stand-in gateway serves ``/metrics`` on its API port,
over mutual TLS like the rest of its API (any identity may read it: no role needed).
A process whose endpoint does not answer gives None: status shows it blank, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ridgeline.trust.credentials import Transport


@dataclass(frozen=True)
class NodeFigures:
    rpcs: int
    errors: int
    hold_p99_seconds: float | None
    db_retries: int
    leases_held: int
    #: How long the oldest due settlement has waited (the node's vitals; None: it runs no settlement).
    settlement_oldest_due_seconds: float | None = None
    #: The worst of its circuit breakers: 0 closed, 1 half-open, 2 open (None: it has none).
    breaker_state: int | None = None
    #: Spans it handed to its trace exporter (0 untraced): what proves a traced run traced.
    spans_exported: int = 0


@dataclass(frozen=True)
class CoordinatorFigures:
    decided_commit: int
    decided_abort: int
    decision_p99_seconds: float | None
    #: Treks in doubt or being driven at the last redrive pass.
    unfinished: int
    #: The leader epoch it holds (0: it follows), and since when (Unix time, the log's clock).
    leader_epoch: int = 0
    leader_since: float = 0.0


@dataclass(frozen=True)
class GatewayFigures:
    requests: int
    #: Requests answered 5xx (refused, lost replies, outages): what the payer saw as "unknown".
    unavailable: int
    p99_seconds: float | None
    outage: bool


def scrape(metrics_address: str, timeout_seconds: float = 2.0) -> NodeFigures | None:
    """The node's figures since it started, or None when its endpoint does not answer."""
    samples = _samples(f"http://{metrics_address}/metrics", timeout_seconds)
    if samples is None:
        return None
    rpcs = errors = retries = leases = 0
    hold_buckets: dict[float, float] = {}
    oldest_due: float | None = None
    breaker: int | None = None
    spans = 0
    for sample in samples:
        if sample.name == "ridgeline_rpc_duration_seconds_count":
            rpcs += int(sample.value)
            if sample.labels.get("code") != "OK":
                errors += int(sample.value)
        elif sample.name == "ridgeline_rpc_duration_seconds_bucket" and sample.labels.get("method") == "PlaceHold":
            _add_bucket(hold_buckets, sample)
        elif sample.name == "ridgeline_db_retries_total":
            retries += int(sample.value)
        elif sample.name == "ridgeline_leases_held":
            leases = int(sample.value)
        elif sample.name == "ridgeline_settlement_oldest_due_seconds":
            oldest_due = sample.value
        elif sample.name == "ridgeline_circuit_breaker_state":
            breaker = max(breaker or 0, int(sample.value))
        elif sample.name == "ridgeline_trace_spans_exported_total":
            spans = int(sample.value)
    return NodeFigures(rpcs, errors, _quantile(hold_buckets, 0.99), retries, leases, oldest_due, breaker, spans)


def scrape_coordinator(metrics_address: str, timeout_seconds: float = 2.0) -> CoordinatorFigures | None:
    """The coordinator's decisions since it started and its unfinished treks, or None."""
    samples = _samples(f"http://{metrics_address}/metrics", timeout_seconds)
    if samples is None:
        return None
    decided: dict[str, int] = {}
    buckets: dict[float, float] = {}
    unfinished = epoch = 0
    since = 0.0
    for sample in samples:
        if sample.name == "ridgeline_trek_decision_seconds_count":
            decided[sample.labels.get("decision", "")] = int(sample.value)
        elif sample.name == "ridgeline_trek_decision_seconds_bucket":
            _add_bucket(buckets, sample)
        elif sample.name == "ridgeline_treks_unfinished":
            unfinished = int(sample.value)
        elif sample.name == "ridgeline_coordinator_leader_epoch":
            epoch = int(sample.value)
        elif sample.name == "ridgeline_coordinator_leader_since_seconds":
            since = float(sample.value)
    return CoordinatorFigures(decided.get("commit", 0), decided.get("abort", 0), _quantile(buckets, 0.99), unfinished, epoch, since)


def scrape_gateway(gateway_url: str, transport: Transport, timeout_seconds: float = 2.0) -> GatewayFigures | None:
    """The gateway's payment requests since it started and whether an outage is injected, or None."""
    try:
        with transport.http_client(gateway_url, timeout_seconds=timeout_seconds) as http:
            samples = _parse(http.get("/metrics").raise_for_status().text)
    except (httpx.HTTPError, ValueError):
        return None
    requests = unavailable = 0
    buckets: dict[float, float] = {}
    outage = False
    for sample in samples:
        if sample.name == "ridgeline_gateway_requests_total":
            requests += int(sample.value)
            if sample.labels.get("status", "").startswith("5"):
                unavailable += int(sample.value)
        elif sample.name == "ridgeline_gateway_request_seconds_bucket":
            _add_bucket(buckets, sample)
        elif sample.name == "ridgeline_gateway_fault_outage":
            outage = sample.value > 0
    return GatewayFigures(requests, unavailable, _quantile(buckets, 0.99), outage)


def _samples(url: str, timeout_seconds: float) -> list[Sample] | None:
    """Every sample at ``url``; None when nothing answers there, or not in Prometheus's format."""
    try:
        return _parse(httpx.get(url, timeout=timeout_seconds).text)
    except (httpx.HTTPError, ValueError):
        return None


def _parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus exposition; ValueError when it is none."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _add_bucket(buckets: dict[float, float], sample: Sample) -> None:
    """Sums a histogram's cumulative bucket counts over its other labels."""
    bound = float(sample.labels["le"])
    buckets[bound] = buckets.get(bound, 0.0) + sample.value


def _quantile(buckets: dict[float, float], fraction: float) -> float | None:
    """The upper bound of the histogram bucket holding the quantile (what Prometheus can know)."""
    if not buckets or max(buckets.values()) == 0:
        return None
    total = buckets[max(buckets)]
    for bound in sorted(buckets):
        if buckets[bound] >= fraction * total:
            return bound
    return None

