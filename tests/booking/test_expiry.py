"""Invariant 3, holds end (regional part): lapsed holds are free to readers at once, reclaimed
inline by a hold that needs their units, expired by the sweep, and expired by another node's
sweeper within TTL + one sweep interval when the node that placed them died.

Lapsed holds are made without sleeping: the domain function places them at a ``now`` in the
past. Tests that must see a lapsed hold *before* any sweep use a node whose sweeper is idle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone

import grpc
import pytest
from certificates import SessionCerts
from drive import night, outcome, owner_address, place_hold_directly, place_lapsed_hold
from invariants import assert_history_consistent, assert_inventory_matches_bookings, bookings_by_id, history_of, night_tallies

from ridgeline.regional.booking.sweeper import sweep_once
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import ClusterClient
from ridgeline.routing.client import BookingClient
from ridgeline.routing.clock import utc_now
from ridgeline.v1 import booking_pb2 as pb

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


BASECAMP = "argentiere"
GUIDE, GUIDE_CAPACITY = "argentiere-guide", 6
LOCKER = "argentiere-locker"
SWEEP_INTERVAL_SECONDS = 2.0
#: Slack beyond TTL + one sweep interval for the sweep's own transaction and for scheduling on a
#: loaded 2-core machine; still less than the extra interval a skipped sweep would add.
SWEEP_SLACK_SECONDS = 1.5


@pytest.fixture
def idle_sweeper_client(alps_db, certs: SessionCerts) -> Iterator[BookingClient]:
    """A client of a node whose sweeper does not run during the test: whatever it sees of lapsed
    holds, it sees through reads and inline reclaim, not because a sweep got there first."""
    config = NodeConfig(region="eu-alps", node_id="idle-sweeper", database_url=alps_db.url, sweep_interval_seconds=3600, certs_dir=certs.dir)
    node = RegionalNode(config)
    node.start()
    try:
        with BookingClient(node.address, transport=certs.desk) as client:
            yield client
    finally:
        node.stop(grace_seconds=1)


def test_invariant_3_lapsed_hold_counts_as_free_before_any_sweep(idle_sweeper_client, alps_engine, alps_db) -> None:
    lapsed = place_lapsed_hold(alps_engine, BASECAMP, GUIDE, night(20), night(22), 4)
    idle_sweeper_client.place_hold(BASECAMP, GUIDE, night(20), night(21), 1, "live-guest")

    [availability] = idle_sweeper_client.availability(BASECAMP, night(20), night(22), GUIDE).resources

    assert [(n.held, n.confirmed, n.free) for n in availability.nights] == [(1, 0, GUIDE_CAPACITY - 1), (0, 0, GUIDE_CAPACITY)]
    # Nothing swept it: the row still says held and the counters still include it.
    assert bookings_by_id(alps_db.url)[lapsed.booking_id].state == "held"
    assert [t.held for t in night_tallies(alps_db.url, GUIDE, night(20), night(22))] == [5, 4]


def test_invariant_3_hold_needing_lapsed_units_reclaims_them_inline(idle_sweeper_client, alps_engine, alps_db) -> None:
    lapsed = place_lapsed_hold(alps_engine, BASECAMP, GUIDE, night(20), night(22), GUIDE_CAPACITY)
    live = idle_sweeper_client.place_hold(BASECAMP, GUIDE, night(30), night(31), GUIDE_CAPACITY, "live-guest")

    granted = idle_sweeper_client.place_hold(BASECAMP, GUIDE, night(21), night(23), 4, "new-guest")
    refused = outcome(lambda: idle_sweeper_client.place_hold(BASECAMP, GUIDE, night(30), night(31), 1, "new-guest"))

    assert granted.state == pb.BOOKING_STATE_HELD
    rows = bookings_by_id(alps_db.url)
    assert rows[lapsed.booking_id].state == "expired"
    assert [(h.version, h.from_state, h.to_state, h.reason) for h in history_of(alps_db.url, lapsed.booking_id)] == [
        (1, None, "held", "hold placed"),
        (2, "held", "expired", "hold TTL elapsed"),
    ]
    # A live hold is never reclaimed: the full night stays full.
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED, (refused.code, refused.details)
    assert rows[live.booking_id].state == "held"
    assert [t.held for t in night_tallies(alps_db.url, GUIDE, night(20), night(23))] == [0, 4, 4]
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def test_invariant_3_sweep_expires_every_lapsed_hold_and_returns_its_units(alps_engine, alps_db) -> None:
    lapsed = [
        place_lapsed_hold(alps_engine, BASECAMP, resource, night(first), night(first + length), party)
        for resource, first, length, party in [
            (GUIDE, 20, 1, 2), (GUIDE, 20, 3, 1), (GUIDE, 21, 2, 3), (LOCKER, 20, 4, 5),
            (LOCKER, 22, 1, 1), (LOCKER, 40, 2, 2), (GUIDE, 50, 1, 6),
        ]
    ]
    live = [
        place_hold_directly(alps_engine, BASECAMP, resource, night(first), night(first + length), party, placed_at=utc_now(), ttl_seconds=900)
        for resource, first, length, party in [(GUIDE, 21, 1, 1), (LOCKER, 20, 3, 2)]
    ]

    # Small batches, so that the sweep has to loop to reach them all.
    expired = sweep_once(alps_engine, now=utc_now(), batch_max=2, actor="node:test-sweeper")

    assert expired == len(lapsed)
    rows = bookings_by_id(alps_db.url)
    assert {rows[b.booking_id].state for b in lapsed} == {"expired"}
    assert {rows[b.booking_id].state for b in live} == {"held"}
    tallies = assert_inventory_matches_bookings(alps_db.url)
    assert sum(t.held for t in tallies) == 1 + 2 * 3
    assert_history_consistent(alps_db.url)
    assert sweep_once(alps_engine, now=utc_now(), batch_max=2, actor="node:test-sweeper") == 0


def _wait_for_state(url: str, booking_id: str, state: str, bound_seconds: float) -> bool:
    deadline = time.monotonic() + bound_seconds
    while time.monotonic() < deadline:
        if bookings_by_id(url, [booking_id])[booking_id].state == state:
            return True
        time.sleep(0.1)
    return bookings_by_id(url, [booking_id])[booking_id].state == state


@pytest.mark.slow
def test_invariant_3_hold_of_a_dead_node_expires_within_ttl_plus_one_sweep_interval(alps_db, node_process, certs: SessionCerts) -> None:
    ttl_seconds = NodeConfig.hold_ttl_min_seconds
    # Both processes start at once (a process start is most of a second here).
    with ThreadPoolExecutor(2) as pool:
        nodes = list(pool.map(lambda _: node_process(alps_db, "--sweep-interval", str(SWEEP_INTERVAL_SECONDS)), range(2)))
    with ClusterClient([n.address for n in nodes], transport=certs.desk) as client:
        hold = client.place_hold(BASECAMP, GUIDE, night(20), night(22), 3, "orphaned-guest", hold_ttl_seconds=ttl_seconds)
        owner = owner_address(client, BASECAMP)
    placer = next(n for n in nodes if n.address == owner)
    sweeper_node = next(n for n in nodes if n is not placer)
    placer.kill()
    expires_at = hold.expires_at.ToDatetime(tzinfo=timezone.utc)
    assert bookings_by_id(alps_db.url)[hold.booking_id].state == "held"

    bound_seconds = (expires_at - utc_now()).total_seconds() + SWEEP_INTERVAL_SECONDS + SWEEP_SLACK_SECONDS
    assert _wait_for_state(alps_db.url, hold.booking_id, "expired", bound_seconds), f"still held {bound_seconds:.1f}s later"

    row = bookings_by_id(alps_db.url)[hold.booking_id]
    assert timedelta(0) <= row.updated_at - expires_at <= timedelta(seconds=SWEEP_INTERVAL_SECONDS + SWEEP_SLACK_SECONDS)
    assert_inventory_matches_bookings(alps_db.url)
    with BookingClient(sweeper_node.address, transport=certs.desk) as client:
        assert client.get_booking(hold.booking_id).state == pb.BOOKING_STATE_EXPIRED
