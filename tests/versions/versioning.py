"""What the workflow-version tests share: the SRE's rollout calls, and reading versions from SQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from certificates import SessionCerts
from invariants import query

from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc

T = TypeVar("T")


def rollout(certs: SessionCerts, address: str, version: str, percent: int = 0, *, rollback: bool = False) -> cpb.WorkflowVersions:
    """``ridgeline flows rollout`` as the SRE does it: through ClusterService.SetRollout."""
    with certs.sre.channel(address) as channel:
        return cpb_grpc.ClusterServiceStub(channel).SetRollout(cpb.SetRolloutRequest(version=version, percent=percent, rollback=rollback), timeout=10)


def versions_of(certs: SessionCerts, address: str) -> cpb.WorkflowVersions:
    with certs.sre.channel(address) as channel:
        return cpb_grpc.ClusterServiceStub(channel).ListWorkflowVersions(cpb.ListWorkflowVersionsRequest(), timeout=10)


def workflows(url: str, booking_ids: Iterable[str]) -> dict[str, str]:
    """booking id -> the version its row records."""
    rows = query(url, "SELECT booking_id::text AS id, workflow FROM bookings WHERE booking_id::text = ANY(%(ids)s)", {"ids": list(booking_ids)})
    return {row.id: row.workflow for row in rows}


def eventually(what: str, probe: Callable[[], T | None], timeout_seconds: float = 30.0, poll_seconds: float = 0.1) -> T:
    """``probe()`` once it is truthy; fails naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout_seconds} s: {what}"
        time.sleep(poll_seconds)
