"""Invariant 2, nothing acknowledged is lost: SIGKILL a node process in the middle of a storm.

Sixteen clients place holds as fast as they can on a separate ``ridgeline node`` process,
spread over resources and nights; the process is killed without warning while calls are in
flight. Both ways a node places holds are drilled. Every hold a client was told about must then exist, held, in the region database;
the inventory counters must equal the held bookings night by night (an in-flight transaction
either committed whole or left nothing); and a new node on the same database serves them.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import grpc
import pytest
from drive import night, outcome, race
from invariants import assert_history_consistent, assert_inventory_matches_bookings, bookings_by_id

from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb

STORMERS = 16
STORM_SECONDS = 1.5
#: (basecamp, resource) pairs with room for a storm of one-unit holds.
RESOURCES = (
    ("argentiere", "argentiere-dorm"),
    ("argentiere", "argentiere-locker"),
    ("hoernli", "hoernli-dorm"),
    ("gouter", "gouter-dorm"),
    ("gouter", "gouter-locker"),
    ("capanna-margherita", "margherita-dorm"),
)
Code = grpc.StatusCode


#: The node's two ways of placing holds: group-commit rounds (the default), and one statement
#: per hold (``--hold-round-max 1``; also the fallback path of requests a round did not place).
HOLD_PATHS = [pytest.param((), id="group-commit"), pytest.param(("--hold-round-max", "1"), id="one-statement-per-hold")]


@pytest.mark.parametrize("node_args", HOLD_PATHS)
def test_invariant_2_holds_acknowledged_before_a_node_is_killed_mid_storm_survive(alps_db, node_process, certs, node_args) -> None:
    node = node_process(alps_db, *node_args)
    acknowledged: list[pb.Booking] = []
    cut_short: list[Code] = []  # calls started before the kill that got no answer
    killed_at: list[float] = []

    def stormer(i: int, client: BookingClient) -> None:
        rng = random.Random(i)
        while not killed_at:
            camp, resource = rng.choice(RESOURCES)
            start = night(rng.randint(5, 60))
            started = time.monotonic()
            result = outcome(lambda: client.place_hold(camp, resource, start, start + timedelta(days=rng.randint(1, 3)), 1, f"storm-{i}"))
            if result.ok:
                acknowledged.append(result.reply)
            elif result.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED):
                if killed_at and started < killed_at[0]:
                    cut_short.append(result.code)
                return
            else:
                assert result.code in (Code.RESOURCE_EXHAUSTED, Code.ABORTED), (result.code, result.details)

    def kill() -> None:
        killed_at.append(time.monotonic())
        node.kill()

    killer = threading.Timer(STORM_SECONDS, kill)
    killer.start()
    try:
        # One attempt per call: after the kill a call fails at once, not after retrying a dead node.
        race(node.address, STORMERS, stormer, transport=certs.desk, timeout_seconds=5, attempts_max=1)
    finally:
        killer.cancel()
        killer.join()

    assert killed_at, "the storm ended before the kill"
    assert len(acknowledged) >= 30, f"only {len(acknowledged)} holds acknowledged: not a storm"
    assert cut_short, "no call was in flight when the node died"
    rows = bookings_by_id(alps_db.url, [b.booking_id for b in acknowledged])
    lost = [b.booking_id for b in acknowledged if b.booking_id not in rows]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged holds are gone: {lost[:5]}"
    for booking in acknowledged:
        row = rows[booking.booking_id]
        assert (row.state, row.resource_id, row.party_size) == ("held", booking.resource_id, booking.party_size)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)

    successor = node_process(alps_db)
    with BookingClient(successor.address, transport=certs.desk, timeout_seconds=10) as client:
        for booking in acknowledged:
            assert client.get_booking(booking.booking_id) == booking
