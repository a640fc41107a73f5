"""The coordinator SIGKILLed at every point of the protocol, then restarted (invariants 5 and 4).

A tests-only hook (``RIDGELINE_COORDINATOR_CRASH_AT``, :mod:`ridgeline.global_coordinator.crash_points`)
kills the coordinator process the k-th time it passes a named point. After a restart on
the same address every trek must be all-or-nothing at rest in the participants' own
tables, and the gateway's own ledger must keep exactly the price of the confirmed legs.
Hypothesis draws crash points × leg outcomes × payment outcomes; the ``@example``s pin
every point the protocol has: after k of n prepares, after the charge before the
decision, after the decision before any commit (or abort), in the middle of commits and
of aborts.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from certificates import SessionCerts
from drive import night
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trek_cluster import TrekCluster, call_ignoring_death, leg, plan_request, running_cluster

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.v1 import trek_pb2 as tpb

#: Each leg is (basecamp, resource) in a different region; a refused leg asks more places
#: than the resource has (the participant refuses it before holding anything).
LEG_PLACES = (("argentiere", "argentiere-dorm", 40), ("abbot-pass", "abbot-bunk", 24), ("plaza-de-mulas", "mulas-dome", 60))
#: Crash points before the decision: a restarted coordinator finds no decision row and aborts.
BEFORE_DECISION = ("prepared", "charged")
_nights = itertools.count(50, 3)


@pytest.fixture(scope="module")
def cluster(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts) -> Iterator[TrekCluster]:
    with running_cluster(region_servers, fresh_database, certs) as trek_cluster:
        yield trek_cluster


def crash_reached(point: str, count: int, legs_ok: list[bool], paid: bool) -> bool:
    """Whether a fresh coordinator passes ``point`` ``count`` times while running this trek."""
    committing = all(legs_ok) and paid
    passes = {
        "prepared": len(legs_ok),
        "charged": 1,
        "decided": 1,
        "committed": len(legs_ok) if committing else 0,
        "aborted": 0 if committing else len(legs_ok),
    }
    return count <= passes[point]


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    point=st.sampled_from(["prepared", "charged", "decided", "committed", "aborted"]),
    count=st.integers(1, 3),
    legs_ok=st.lists(st.booleans(), min_size=2, max_size=3),
    paid=st.booleans(),
)
@example(point="prepared", count=1, legs_ok=[True, True, True], paid=True)
@example(point="prepared", count=2, legs_ok=[True, True, True], paid=True)
@example(point="charged", count=1, legs_ok=[True, True, True], paid=True)
@example(point="decided", count=1, legs_ok=[True, True, True], paid=True)
@example(point="committed", count=1, legs_ok=[True, True, True], paid=True)
@example(point="committed", count=2, legs_ok=[True, True, True], paid=True)
@example(point="decided", count=1, legs_ok=[True, False, True], paid=True)
@example(point="aborted", count=1, legs_ok=[True, True, False], paid=True)
@example(point="aborted", count=2, legs_ok=[True, True, True], paid=False)
def test_invariants_5_and_4_hold_after_a_coordinator_sigkill_at_any_point(cluster, point, count, legs_ok, paid) -> None:
    gateway_faults(cluster, decline_rate=0.0 if paid else 1.0)
    start = next(_nights)
    legs = [leg(camp, resource, night(start + i), party=1 if ok else capacity + 1) for i, ((camp, resource, capacity), ok) in enumerate(zip(LEG_PLACES, legs_ok))]
    key = str(uuid.uuid4())
    doomed = cluster.start_coordinator(crash_at=f"{point}:{count}")
    try:
        channel, stub = cluster.stub()
        with channel:
            answer = call_ignoring_death(lambda: stub.PlanTrek(plan_request(key, legs), timeout=15))
        reached = crash_reached(point, count, legs_ok, paid)
        if reached:
            assert doomed.process.wait(10) == -9, "the coordinator was to be killed at this point"
            assert answer is None or answer.state not in (tpb.TREK_STATE_COMMITTED, tpb.TREK_STATE_ABORTED)
        else:
            assert doomed.process.poll() is None and answer is not None
    finally:
        doomed.kill()
        gateway_faults(cluster)
    survivor = cluster.start_coordinator()
    try:
        trek = cluster.wait_final(cluster.trek_id_for_key(key))
    finally:
        survivor.kill()
    commits = all(legs_ok) and paid and not (reached and point in BEFORE_DECISION)
    assert trek.state == (tpb.TREK_STATE_COMMITTED if commits else tpb.TREK_STATE_ABORTED), (trek.reason, [l.detail for l in trek.legs])
    cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()


def gateway_faults(cluster: TrekCluster, **settings: float) -> None:
    with cluster.certs.sre.http_client(cluster.gateway_url, timeout_seconds=10) as admin:
        admin.put("/admin/faults", json=settings).raise_for_status()
