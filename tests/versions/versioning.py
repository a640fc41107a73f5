"""What the workflow-version tests share: the SRE's rollout calls, and reading versions from SQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import psycopg
from certificates import SessionCerts
from invariants import libpq_url, query

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


_EXPECTED = """
SELECT b.booking_id::text AS id, b.workflow, b.state, b.total_price_cents AS total,
       COALESCE(SUM(s.amount_cents) FILTER (WHERE s.step IN ('deposit charged', 'balance charged')), 0) AS charged,
       COALESCE(SUM(s.amount_cents) FILTER (WHERE s.step = 'refunded by policy'), 0) AS refunded
FROM bookings AS b LEFT JOIN workflow_steps AS s USING (booking_id)
WHERE b.booking_id::text = ANY(%(ids)s) GROUP BY b.booking_id
"""


def expected_standing(url: str, booking_ids: list[str]) -> dict[str, int]:
    """What each booking's version says the gateway holds for it at rest: settle@1 its price
    when confirmed, else nothing; settle@2 what its steps charged minus what they refunded."""
    found = {}
    for row in query(url, _EXPECTED, {"ids": booking_ids}):
        if row.workflow == "settle@1":
            found[row.id] = row.total if row.state == "confirmed" else 0
        else:
            assert row.workflow == "settle@2", row
            found[row.id] = row.charged - row.refunded
    return found


def standing(gateway_sql: Callable[..., list], booking_ids: list[str]) -> dict[str, int]:
    """What the gateway's own ledger holds per booking: succeeded charges minus refunds."""
    rows = gateway_sql(
        "SELECT reference, COALESCE(SUM(amount_cents - refunded_cents), 0) FROM gateway_charges"
        " WHERE reference = ANY(%s) AND status = 'succeeded' GROUP BY reference",
        booking_ids,
    )
    return {b: 0 for b in booking_ids} | {reference: int(cents) for reference, cents in rows}


def steps_of(url: str, booking_id: str) -> list[str]:
    return [row.step for row in query(url, "SELECT step FROM workflow_steps WHERE booking_id::text = %(id)s ORDER BY at, step", {"id": booking_id})]


def pending_timers(url: str, booking_id: str) -> list[str]:
    rows = query(url, "SELECT step FROM workflow_timers WHERE booking_id::text = %(id)s AND fired_at IS NULL ORDER BY due_at", {"id": booking_id})
    return [row.step for row in rows]


def make_balances_due(url: str) -> None:
    """The balance falls due now for every pending balance timer: a node process runs on the
    wall clock, so the test moves the timers instead of the clock."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("UPDATE workflow_timers SET next_attempt_at = now() - interval '1 second' WHERE step = 'balance' AND fired_at IS NULL")
