"""Reading a node's Prometheus endpoint for ``ridgeline status``: a few numbers per node."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class NodeFigures:
    rpcs: int
    errors: int
    hold_p99_seconds: float | None
    db_retries: int
    leases_held: int


def scrape(metrics_address: str, timeout_seconds: float = 2.0) -> NodeFigures | None:
    """The node's figures since it started, or None when its endpoint does not answer."""
    try:
        text = httpx.get(f"http://{metrics_address}/metrics", timeout=timeout_seconds).text
    except httpx.HTTPError:
        return None
    rpcs = errors = retries = leases = 0
    hold_buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ridgeline_rpc_duration_seconds_count":
                rpcs += int(sample.value)
                if sample.labels.get("code") != "OK":
                    errors += int(sample.value)
            elif sample.name == "ridgeline_rpc_duration_seconds_bucket" and sample.labels.get("method") == "PlaceHold":
                bound = float(sample.labels["le"])
                hold_buckets[bound] = hold_buckets.get(bound, 0.0) + sample.value
            elif sample.name == "ridgeline_db_retries_total":
                retries += int(sample.value)
            elif sample.name == "ridgeline_leases_held":
                leases = int(sample.value)
    return NodeFigures(rpcs, errors, _quantile(hold_buckets, 0.99), retries, leases)


def _quantile(buckets: dict[float, float], fraction: float) -> float | None:
    """The upper bound of the histogram bucket holding the quantile (what Prometheus can know)."""
    if not buckets or max(buckets.values()) == 0:
        return None
    total = buckets[max(buckets)]
    for bound in sorted(buckets):
        if buckets[bound] >= fraction * total:
            return bound
    return None
