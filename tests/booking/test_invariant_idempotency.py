"""Invariant 7, idempotency: a repeated key returns the first result and has no second effect.

Repeats are sent sequentially and concurrently (16 threads, same key) through real gRPC;
effects are counted in SQL: booking rows, history rows, idempotency records, inventory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import grpc
import psycopg
import pytest
from drive import night, outcome, race
from invariants import (
    assert_history_consistent,
    assert_inventory_matches_bookings,
    bookings_by_id,
    history_of,
    libpq_url,
    snapshot,
)

from ridgeline.routing.client import BookingClient
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb

BASECAMP = "argentiere"
GUIDE, GUIDE_CAPACITY = "argentiere-guide", 6
STAY_NIGHTS = 2
PARTY = 2
UNITS = PARTY * STAY_NIGHTS
CONCURRENT_REPEATS = 16


def _hold(client: BookingClient, key: str | None = None, *, party: int = PARTY, first_night: int = 20, resource: str = GUIDE) -> pb.Booking:
    start = night(first_night)
    return client.place_hold(BASECAMP, resource, start, start + timedelta(days=STAY_NIGHTS), party, "idem-customer", idempotency_key=key)


def _repeat(address: str, client: BookingClient, mode: str, call: Callable[[BookingClient], object], transport: Transport) -> list:
    """The same call twice in a row on one client, or 16 times at once from 16 clients (as ``transport``)."""
    if mode == "sequential":
        return [outcome(lambda: call(client)) for _ in range(2)]
    return race(address, CONCURRENT_REPEATS, lambda _i, racer: outcome(lambda: call(racer)), transport=transport)


def _assert_all_ok_and_identical(outcomes: list) -> pb.Booking:
    assert all(o.ok for o in outcomes), [(o.code, o.details) for o in outcomes if not o.ok]
    first = outcomes[0].reply
    assert all(o.reply == first for o in outcomes), "a repeat answered something else than the first result"
    return first


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_invariant_7_repeated_place_hold_returns_the_first_booking_and_holds_once(alps_node, alps_client, alps_db, certs, mode) -> None:
    before = snapshot(alps_db.url)

    booking = _assert_all_ok_and_identical(_repeat(alps_node.address, alps_client, mode, lambda c: _hold(c, "hold-key-1"), certs.desk))

    assert snapshot(alps_db.url) == before.plus(bookings=1, history=1, idempotency_records=1, held_total=UNITS)
    assert list(bookings_by_id(alps_db.url)) == [booking.booking_id]
    assert [h.to_state for h in history_of(alps_db.url, booking.booking_id)] == ["held"]
    assert_inventory_matches_bookings(alps_db.url)


# Each move: how to bring a fresh hold to the move's source state, the call, and what one effect does.
_MOVES = {
    "confirm": (None, BookingClient.confirm, "confirmed", {"held_total": -UNITS, "booked_total": +UNITS}),
    "release": (None, BookingClient.release, "released", {"held_total": -UNITS}),
    "cancel": (BookingClient.confirm, BookingClient.cancel, "cancelled", {"booked_total": -UNITS}),
}


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
@pytest.mark.parametrize("move", sorted(_MOVES))
def test_invariant_7_repeated_move_has_one_effect_and_one_answer(alps_node, alps_client, alps_db, certs, move, mode) -> None:
    prepare, call, target, inventory_change = _MOVES[move]
    booking_id = _hold(alps_client).booking_id
    if prepare is not None:
        prepare(alps_client, booking_id)
    before = snapshot(alps_db.url)

    answer = _assert_all_ok_and_identical(
        _repeat(alps_node.address, alps_client, mode, lambda c: call(c, booking_id, idempotency_key=f"{move}-key-1"), certs.desk)
    )

    assert answer.booking_id == booking_id and pb.BookingState.Name(answer.state) == f"BOOKING_STATE_{target.upper()}"
    assert [h.to_state for h in history_of(alps_db.url, booking_id)].count(target) == 1
    assert snapshot(alps_db.url) == before.plus(history=1, idempotency_records=1, **inventory_change)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


# A key first used for one request, then sent with a different one: (first call, second call),
# each given the client and two held bookings a and b.
_REUSES: dict[str, tuple[Callable, Callable]] = {
    "hold-other-party-size": (lambda c, a, b: _hold(c, "k"), lambda c, a, b: _hold(c, "k", party=PARTY + 1)),
    "hold-other-nights": (lambda c, a, b: _hold(c, "k"), lambda c, a, b: _hold(c, "k", first_night=21)),
    "hold-other-resource": (lambda c, a, b: _hold(c, "k"), lambda c, a, b: _hold(c, "k", resource="argentiere-dorm")),
    "hold-key-for-confirm": (lambda c, a, b: _hold(c, "k"), lambda c, a, b: c.confirm(a, idempotency_key="k")),
    "confirm-key-for-release": (lambda c, a, b: c.confirm(a, idempotency_key="k"), lambda c, a, b: c.release(a, idempotency_key="k")),
    "confirm-key-for-another-booking": (lambda c, a, b: c.confirm(a, idempotency_key="k"), lambda c, a, b: c.confirm(b, idempotency_key="k")),
    "release-other-reason": (
        lambda c, a, b: c.release(a, reason="guest asked", idempotency_key="k"),
        lambda c, a, b: c.release(a, reason="weather", idempotency_key="k"),
    ),
}


@pytest.mark.parametrize("case", sorted(_REUSES))
def test_invariant_7_key_reused_for_a_different_request_is_refused_and_writes_nothing(alps_client, alps_db, case) -> None:
    first_call, second_call = _REUSES[case]
    a, b = (_hold(alps_client, first_night=n).booking_id for n in (30, 31))
    first = first_call(alps_client, a, b)
    before = snapshot(alps_db.url)
    stored = bookings_by_id(alps_db.url)

    reused = outcome(lambda: second_call(alps_client, a, b))

    assert reused.code is grpc.StatusCode.INVALID_ARGUMENT, (reused.code, reused.details)
    assert "idempotency key" in reused.details and "already used" in reused.details, reused.details
    assert snapshot(alps_db.url) == before
    assert bookings_by_id(alps_db.url) == stored
    assert first_call(alps_client, a, b) == first, "the key no longer answers its first result"


def test_invariant_7_a_refusal_stands_for_its_key_even_after_units_free_up(alps_client, alps_db) -> None:
    filler = _hold(alps_client, party=GUIDE_CAPACITY)
    refused = outcome(lambda: _hold(alps_client, "late-key"))
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED, (refused.code, refused.details)
    alps_client.release(filler.booking_id)
    before = snapshot(alps_db.url)

    repeated = outcome(lambda: _hold(alps_client, "late-key"))

    assert (repeated.code, repeated.details) == (refused.code, refused.details)
    assert snapshot(alps_db.url) == before
    # The units really are free: the same request under a new key is granted.
    assert _hold(alps_client, "new-key").state == pb.BOOKING_STATE_HELD
    assert_inventory_matches_bookings(alps_db.url)


def test_invariant_7_hold_cut_short_by_its_deadline_is_retried_with_its_key_to_one_booking(alps_node, alps_client, alps_db, certs) -> None:
    before = snapshot(alps_db.url)
    # Another session locks a night of the stay, so the hold waits in the database past its deadline.
    with psycopg.connect(libpq_url(alps_db.url)) as blocker:
        blocker.execute("SELECT 1 FROM inventory WHERE resource_id = %s AND night = %s FOR UPDATE", (GUIDE, night(20)))
        with BookingClient(alps_node.address, transport=certs.desk, timeout_seconds=0.5, attempts_max=1) as impatient:
            cut = outcome(lambda: _hold(impatient, "cut-short-key"))
        assert cut.code is grpc.StatusCode.DEADLINE_EXCEEDED, (cut.code, cut.details)
        blocker.rollback()

    # The caller cannot know whether the hold landed; retrying with the same key must converge.
    retried = _hold(alps_client, "cut-short-key")
    again = _hold(alps_client, "cut-short-key")

    assert again == retried
    assert list(bookings_by_id(alps_db.url)) == [retried.booking_id]
    assert snapshot(alps_db.url) == before.plus(bookings=1, history=1, idempotency_records=1, held_total=UNITS)
