"""Treks when a participant fails: a node killed with a leg prepared, a region database
unreachable during prepare, and treks racing single bookings for the last places."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import timedelta
from urllib.parse import urlparse

import grpc
import psycopg
import pytest
from certificates import SessionCerts
from drive import night, outcome
from invariants import query
from trek_cluster import TrekCluster, call_ignoring_death, leg, plan_request, running_cluster

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import trek_pb2 as tpb

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def cluster(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts) -> Iterator[TrekCluster]:
    with running_cluster(region_servers, fresh_database, certs, node_process_regions=("sa-andes",)) as trek_cluster:
        yield trek_cluster


def route(days_ahead: int) -> list[tpb.TrekLeg]:
    return [
        leg("gouter", "gouter-dorm", night(days_ahead)),
        leg("bow-hut", "bow-bunk", night(days_ahead + 2)),
        leg("refugio-frey", "frey-bunk", night(days_ahead + 4)),
    ]


def test_a_participant_killed_with_a_leg_prepared_gets_the_commit_once_it_is_back(cluster) -> None:
    key = str(uuid.uuid4())
    doomed = cluster.start_coordinator(crash_at="decided")
    channel, stub = cluster.stub()
    with channel:
        call_ignoring_death(lambda: stub.PlanTrek(plan_request(key, route(60)), timeout=15))
    assert doomed.process.wait(10) == -9
    trek_id = cluster.trek_id_for_key(key)
    held = query(cluster.region_urls["sa-andes"], "SELECT b.state FROM trek_legs t JOIN bookings b USING (booking_id) WHERE t.trek_id = %(t)s", {"t": trek_id})
    assert [r.state for r in held] == ["held"], "the leg was prepared before the decision"
    cluster.node_processes["sa-andes"].kill()
    survivor = cluster.start_coordinator()
    try:
        channel, stub = cluster.stub()
        with channel:
            trek = _when(lambda: stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=5), lambda t: "UNAVAILABLE" in t.legs[2].detail)
            assert trek.state == tpb.TREK_STATE_COMMITTING, "a commit cannot land on a dead node"
            assert trek.legs[2].state == tpb.LEG_STATE_PREPARED
            stuck = stub.ListTreks(tpb.ListTreksRequest(stuck_after_seconds=1), timeout=5)
            assert trek_id in [t.trek_id for t in stuck.treks]
            cluster.start_node("sa-andes")
            trek = cluster.wait_final(trek_id, timeout_seconds=30)
    finally:
        survivor.stop()
    assert trek.state == tpb.TREK_STATE_COMMITTED
    cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()


def _when(read: Callable[[], tpb.Trek], ready: Callable[[tpb.Trek], bool], timeout_seconds: float = 15.0) -> tpb.Trek:
    """Reads the trek until ``ready`` holds (the coordinator works on its own schedule)."""
    until = time.monotonic() + timeout_seconds
    while not ready(trek := read()):
        assert time.monotonic() < until, f"condition not reached: {trek}"
        time.sleep(0.1)
    return trek


def test_a_region_database_unreachable_during_prepare_aborts_the_trek_and_holds_nothing(cluster, region_servers) -> None:
    url = cluster.region_urls["na-rockies"]
    name = urlparse(url).path.lstrip("/")
    admin_dsn = region_servers["na-rockies"].admin_dsn()
    coordinator = cluster.start_coordinator()
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            # The node's connections (not this test's own readers) lose their database.
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'ridgeline-%%'", (name,))
            try:
                channel, stub = cluster.stub()
                with channel:
                    planned = stub.PlanTrek(plan_request(str(uuid.uuid4()), route(70), wait=False), timeout=10)
                    trek = _when(lambda: stub.GetTrek(tpb.GetTrekRequest(trek_id=planned.trek_id), timeout=5), lambda t: t.decision != tpb.DECISION_PENDING)
                    assert trek.decision == tpb.DECISION_ABORT and "leg 1 refused: UNAVAILABLE" in trek.reason, trek.reason
                    for region in ("eu-alps", "sa-andes"):
                        sql = "SELECT b.state FROM trek_legs t JOIN bookings b USING (booking_id) WHERE t.trek_id = %(t)s"
                        until = time.monotonic() + 15
                        while [r.state for r in query(cluster.region_urls[region], sql, {"t": trek.trek_id})] != ["released"]:
                            assert time.monotonic() < until, f"{region} still holds a leg of an aborted trek"
                            time.sleep(0.1)
                    trek = stub.GetTrek(tpb.GetTrekRequest(trek_id=trek.trek_id), timeout=5)
                    assert trek.state == tpb.TREK_STATE_ABORTING, "the abort cannot reach the fence while the database is down"
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        trek = cluster.wait_final(trek.trek_id, timeout_seconds=30)
    finally:
        coordinator.stop()
    assert trek.state == tpb.TREK_STATE_ABORTED
    fence = query(url, "SELECT state, booking_id FROM trek_legs WHERE trek_id = %(t)s", {"t": trek.trek_id})
    assert [(f.state, f.booking_id) for f in fence] == [("aborted", None)], "an empty abort fenced the leg"
    cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()


#: Places with six units each, one per region: 12 treks and 3 × 8 single bookings want them.
LAST_PLACES = (("eu-alps", "argentiere", "argentiere-guide"), ("na-rockies", "abbot-pass", "abbot-guide"), ("sa-andes", "refugio-whymper", "whymper-guide"))
TREKS = 12
SINGLES_PER_REGION = 8


def test_treks_and_single_bookings_racing_for_the_last_places_never_overbook_and_stay_atomic(cluster) -> None:
    start = night(80)
    legs = [leg(camp, resource, start, nights=1) for _, camp, resource in LAST_PLACES]
    coordinator = cluster.start_coordinator()
    try:
        channel, stub = cluster.stub()

        def trek(i: int) -> tpb.Trek:
            return stub.PlanTrek(plan_request(f"race-{uuid.uuid4()}", legs, customer=f"trekker-{i}"), timeout=30)

        def walk_in(region: str, camp: str, resource: str) -> bool:
            """A desk booking (hold, then confirm); False when the place was gone."""
            with BookingClient(cluster.region_targets[region], transport=cluster.certs.desk, timeout_seconds=15) as client:
                held = outcome(lambda: client.place_hold(camp, resource, start, start + timedelta(days=1), 1, "walk-in"))
                if not held.ok:
                    assert held.code is Code.RESOURCE_EXHAUSTED, held.details
                    return False
                client.confirm(held.reply.booking_id)
                return True

        with channel, futures.ThreadPoolExecutor(TREKS + 3 * SINGLES_PER_REGION) as pool:
            treks = [pool.submit(trek, i) for i in range(TREKS)]
            walk_ins = {place: [pool.submit(walk_in, *place) for _ in range(SINGLES_PER_REGION)] for place in LAST_PLACES}
            results = [t.result() for t in treks]
            confirmed_walk_ins = {place: sum(f.result() for f in calls) for place, calls in walk_ins.items()}
        finals = [cluster.wait_final(t.trek_id) for t in results]
    finally:
        coordinator.stop()
    committed = sum(t.state == tpb.TREK_STATE_COMMITTED for t in finals)
    assert committed < TREKS, "12 treks and 24 walk-ins cannot all fit in 6 places"
    for trek_result in finals:
        cluster.assert_atomic_and_paid(trek_result)
    for place in LAST_PLACES:
        region, _, resource = place
        row = query(cluster.region_urls[region], "SELECT capacity, held, booked FROM inventory WHERE resource_id = %(r)s AND night = %(n)s", {"r": resource, "n": start})[0]
        assert row.held == 0, f"{resource}: {row.held} units still held at rest"
        assert row.booked == committed + confirmed_walk_ins[place] <= row.capacity, (row, committed, confirmed_walk_ins[place])
    cluster.assert_inventories()
