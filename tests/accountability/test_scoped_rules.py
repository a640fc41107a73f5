"""The scoped rules of ridgeline.trust.policy at the regional edge, over real gRPC and PostgreSQL.

An agency sees and changes only the bookings it created, through every BookingService
RPC, racing threads included; another agency's booking answers exactly like one that
does not exist, and nothing is written for it. A scoped desk books only inside its
scope. An idempotency key is the caller's own: another principal repeating it gets its
own booking, never the first principal's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from acting import acting_node, as_identity, stub_to
from drive import night, outcome, retrying_aborted
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query, snapshot

from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import requests
from ridgeline.trust.identity import Identity, Role
from ridgeline.v1 import booking_pb2 as pb

Code = grpc.StatusCode
AGENCY_A = Identity("summit-tours", Role.AGENCY)
AGENCY_B = Identity("valley-trips", Role.AGENCY)
DESK = Identity("front-desk", Role.DESK)
HOERNLI_DESK = Identity("zermatt-desk", Role.DESK, frozenset({"hoernli"}))
ALPS_DESK = Identity("alps-desk", Role.DESK, frozenset({"eu-alps"}))
GUIDE = "argentiere-guide"


@pytest.fixture
def node(alps_db) -> Iterator[RegionalNode]:
    with acting_node(NodeConfig(region="eu-alps", node_id="scoped-node", database_url=alps_db.url, workers=16, max_concurrent_rpcs=256)) as started:
        yield started


@pytest.fixture
def stub(node: RegionalNode) -> Iterator:
    with stub_to(node) as booking_stub:
        yield booking_stub


def _hold(stub, who: Identity, days: int, *, basecamp: str = "argentiere", resource: str = GUIDE, key: str | None = None) -> pb.Booking:
    request = requests.hold_request(basecamp, resource, night(days), night(days + 1), 1, f"guest-of-{who.principal}", idempotency_key=key)
    return stub.PlaceHold(request, metadata=as_identity(who), timeout=10)


def _all_listed(stub, who: Identity, **fields: object) -> list[pb.Booking]:
    """Every page of ListBookings as ``who`` (a page of one, so that paging is exercised)."""
    listed, token = [], ""
    while True:
        page = stub.ListBookings(pb.ListBookingsRequest(page_size=1, page_token=token, **fields), metadata=as_identity(who), timeout=10)
        listed += page.bookings
        token = page.next_page_token
        if not token:
            return listed


def test_an_agency_cannot_read_confirm_release_or_cancel_another_agencys_booking_and_nothing_is_written(alps_db, stub) -> None:
    held = _hold(stub, AGENCY_A, 20)
    confirmed = stub.ConfirmBooking(requests.confirm_request(_hold(stub, AGENCY_A, 21).booking_id), metadata=as_identity(AGENCY_A), timeout=10)
    unknown = str(uuid.uuid4())
    before = snapshot(alps_db.url)

    calls = {
        "GetBooking": lambda b: stub.GetBooking(pb.GetBookingRequest(booking_id=b), metadata=as_identity(AGENCY_B), timeout=10),
        "ConfirmBooking": lambda b: stub.ConfirmBooking(requests.confirm_request(b), metadata=as_identity(AGENCY_B), timeout=10),
        "ReleaseHold": lambda b: stub.ReleaseHold(requests.release_request(b, reason="not mine"), metadata=as_identity(AGENCY_B), timeout=10),
        "CancelBooking": lambda b: stub.CancelBooking(requests.cancel_request(b, reason="not mine"), metadata=as_identity(AGENCY_B), timeout=10),
    }
    for rpc, call in calls.items():
        for booking_id in (held.booking_id, confirmed.booking_id):
            refused = outcome(lambda: call(booking_id))
            assert (refused.code, refused.details) == (Code.NOT_FOUND, f"no booking {booking_id}"), (rpc, refused)
        # The same words as for a booking that does not exist: the answer reveals nothing.
        assert outcome(lambda: call(unknown)).details == f"no booking {unknown}", rpc
    assert snapshot(alps_db.url) == before, "a refused call wrote nothing, not even an idempotency record"
    assert stub.GetBooking(pb.GetBookingRequest(booking_id=held.booking_id), metadata=as_identity(AGENCY_A), timeout=10).state == pb.BOOKING_STATE_HELD
    assert stub.GetBooking(pb.GetBookingRequest(booking_id=confirmed.booking_id), metadata=as_identity(DESK), timeout=10).state == pb.BOOKING_STATE_CONFIRMED
    # Its own agency still can.
    cancelled = stub.CancelBooking(requests.cancel_request(confirmed.booking_id), metadata=as_identity(AGENCY_A), timeout=10)
    assert cancelled.state == pb.BOOKING_STATE_CANCELLED and cancelled.history[-1].actor == AGENCY_A.actor


def test_an_agency_lists_only_its_own_bookings_page_by_page(stub) -> None:
    mine = {_hold(stub, AGENCY_A, 20 + i).booking_id for i in range(3)}
    theirs = {_hold(stub, AGENCY_B, 30 + i).booking_id for i in range(2)}
    desk = {_hold(stub, DESK, 40).booking_id}

    assert {b.booking_id for b in _all_listed(stub, AGENCY_A)} == mine
    assert {b.booking_id for b in _all_listed(stub, AGENCY_B)} == theirs
    assert {b.booking_id for b in _all_listed(stub, AGENCY_B, basecamp_id="argentiere", state=pb.BOOKING_STATE_HELD)} == theirs
    assert {b.booking_id for b in _all_listed(stub, DESK)} == mine | theirs | desk, "an unscoped desk lists every booking"
    assert all(b.created_by == AGENCY_A.actor for b in _all_listed(stub, AGENCY_A))


def test_racing_agencies_each_reach_only_their_own_bookings(alps_db, stub) -> None:
    """Agency B's threads try to confirm, cancel and read A's bookings while A's threads
    confirm and cancel them: every one of B's calls is NOT_FOUND and B is on no record of them."""
    targets = [_hold(stub, AGENCY_A, 20 + i % 10).booking_id for i in range(20)]

    # Twenty writers on one resource's ten nights lose to each other now and then (ABORTED
    # past the node's own retries, more often on a loaded machine): both agencies retry
    # that the way the routing client does, with the same request.
    def owner(booking_id: str) -> str:
        meta = as_identity(AGENCY_A)
        confirm, cancel = requests.confirm_request(booking_id), requests.cancel_request(booking_id)
        retrying_aborted(lambda: stub.ConfirmBooking(confirm, metadata=meta, timeout=20))
        return pb.BookingState.Name(retrying_aborted(lambda: stub.CancelBooking(cancel, metadata=meta, timeout=20)).state)

    def intruder(booking_id: str) -> list[Code]:
        meta = as_identity(AGENCY_B)
        calls = [
            (stub.ConfirmBooking, requests.confirm_request(booking_id)),
            (stub.CancelBooking, requests.cancel_request(booking_id)),
            (stub.ReleaseHold, requests.release_request(booking_id)),
            (stub.GetBooking, pb.GetBookingRequest(booking_id=booking_id)),
        ]
        return [outcome(lambda: retrying_aborted(lambda: rpc(request, metadata=meta, timeout=20))).code for rpc, request in calls]

    with ThreadPoolExecutor(16) as pool:
        intrusions = [pool.submit(intruder, b) for b in targets for _ in range(2)]
        owned = [pool.submit(owner, b) for b in targets]
        assert {f.result() for f in owned} == {"BOOKING_STATE_CANCELLED"}
        assert {code for f in intrusions for code in f.result()} == {Code.NOT_FOUND}
    assert not query(alps_db.url, "SELECT 1 FROM booking_history WHERE actor = %(b)s", {"b": AGENCY_B.actor})
    assert not query(alps_db.url, "SELECT 1 FROM idempotency_records WHERE idempotency_key LIKE %(b)s", {"b": f"{AGENCY_B.actor}/%"})
    assert not _all_listed(stub, AGENCY_B)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def test_a_scoped_desk_cannot_book_outside_its_scope_and_writes_nothing(alps_db, stub) -> None:
    before = snapshot(alps_db.url)
    for call in (
        lambda: _hold(stub, HOERNLI_DESK, 20),
        lambda: stub.Book(requests.book_request("argentiere", GUIDE, night(20), night(21), 1, "walk-in"), metadata=as_identity(HOERNLI_DESK), timeout=10),
    ):
        refused = outcome(call)
        assert refused.code == Code.PERMISSION_DENIED and "desk:zermatt-desk may not book at argentiere" in refused.details, refused
    assert snapshot(alps_db.url) == before, "nothing written on refusal"

    inside = _hold(stub, HOERNLI_DESK, 20, basecamp="hoernli", resource="hoernli-dorm")
    assert inside.created_by == HOERNLI_DESK.actor
    assert _hold(stub, ALPS_DESK, 21).booking_id, "a desk scoped to the whole region books anywhere in it"
    elsewhere = _hold(stub, DESK, 22)
    hidden = outcome(lambda: stub.GetBooking(pb.GetBookingRequest(booking_id=elsewhere.booking_id), metadata=as_identity(HOERNLI_DESK), timeout=10))
    assert hidden.code == Code.NOT_FOUND, "a scoped desk does not see bookings outside its scope"
    assert {b.booking_id for b in _all_listed(stub, HOERNLI_DESK)} == {inside.booking_id}


def test_a_key_repeated_by_another_principal_is_its_own_request_never_the_first_principals_booking(alps_db, stub) -> None:
    first = _hold(stub, AGENCY_A, 20, key="shared-key")
    theirs = _hold(stub, AGENCY_B, 20, key="shared-key")
    assert theirs.booking_id != first.booking_id and theirs.created_by == AGENCY_B.actor
    assert _hold(stub, AGENCY_A, 20, key="shared-key").booking_id == first.booking_id, "the first principal's repeat still answers its own"
    assert _hold(stub, AGENCY_B, 20, key="shared-key").booking_id == theirs.booking_id
    assert snapshot(alps_db.url).bookings == 2
