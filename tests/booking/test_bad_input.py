"""Malformed requests get the right status code with a readable message, and write nothing.

Requests are built by hand and sent through the raw generated stub, so that fields the
client library would never produce (empty ids, reversed nights, control characters, an
enum value the contract does not define) reach the server. Every case snapshots the
region database around the call: row counts of bookings, history and idempotency records,
and the inventory totals must not move.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import grpc
import pytest
from certificates import SessionCerts
from drive import night, outcome, place_lapsed_hold
from invariants import assert_history_consistent, assert_inventory_matches_bookings, bookings_by_id, snapshot

from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

Code = grpc.StatusCode
BASECAMP = "argentiere"
GUIDE, GUIDE_CAPACITY = "argentiere-guide", 6
HUGE = "x" * 10_000
STAY_NIGHTS_MAX = NodeConfig.stay_nights_max
HORIZON_DAYS = NodeConfig.advance_booking_days


def _date(value: date) -> pb.Date:
    return pb.Date(year=value.year, month=value.month, day=value.day)


def _nights(first: int, end: int) -> pb.NightRange:
    """Nights from ``first`` to ``end`` days ahead of today (negative: in the past)."""
    return pb.NightRange(start=_date(night(first)), end=_date(night(end)))


def _raw_nights(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None) -> pb.NightRange:
    message = pb.NightRange()
    if start:
        message.start.CopyFrom(pb.Date(year=start[0], month=start[1], day=start[2]))
    if end:
        message.end.CopyFrom(pb.Date(year=end[0], month=end[1], day=end[2]))
    return message


_NEXT_YEAR = night(0).year + 1
VALID_NIGHTS = _nights(20, 22)

#: Malformed night ranges, each with the words its message must contain.
BAD_NIGHTS = {
    "reversed-nights": (_nights(22, 20), ["nights.end", "after"]),
    "empty-nights": (_nights(20, 20), ["nights.end", "after"]),
    "month-13": (_raw_nights((_NEXT_YEAR, 13, 1), (_NEXT_YEAR, 13, 3)), ["nights.start", "not a date"]),
    "february-30": (_raw_nights((_NEXT_YEAR, 2, 27), (_NEXT_YEAR, 2, 30)), ["nights.end", "not a date"]),
    "missing-nights": (pb.NightRange(), ["nights.start", "required"]),
    "missing-end": (_raw_nights((_NEXT_YEAR, 1, 5), None), ["nights.end", "required"]),
    "missing-start": (_raw_nights(None, (_NEXT_YEAR, 1, 5)), ["nights.start", "required"]),
}


@dataclass(frozen=True)
class Bookings:
    """Bookings that exist before the cases run, so that a missing check would act on them."""

    held: str
    confirmed: str


def _hold(**fields: object) -> pb.PlaceHoldRequest:
    valid = dict(
        idempotency_key="bad-input-hold",
        basecamp_id=BASECAMP,
        resource_id=GUIDE,
        nights=VALID_NIGHTS,
        party_size=2,
        customer_id="bad-input-customer",
        hold_ttl_seconds=0,
    )
    return pb.PlaceHoldRequest(**{**valid, **fields})


def _availability(**fields: object) -> pb.GetAvailabilityRequest:
    return pb.GetAvailabilityRequest(**{"basecamp_id": BASECAMP, "resource_id": GUIDE, "nights": VALID_NIGHTS, **fields})


def _move(message: type, booking: Callable[[Bookings], str]) -> Callable[..., Callable[[Bookings], object]]:
    """Builds a move request on an existing booking (in the move's source state), with overrides."""

    def build(**fields: object) -> Callable[[Bookings], object]:
        return lambda b: message(**{"idempotency_key": f"bad-input-{message.__name__}", "booking_id": booking(b), **fields})

    return build


_confirm = _move(pb.ConfirmBookingRequest, lambda b: b.held)
_release = _move(pb.ReleaseHoldRequest, lambda b: b.held)
_cancel = _move(pb.CancelBookingRequest, lambda b: b.confirmed)


def _case(rpc: str, request: object, code: Code, words: list[str], case_id: str):  # noqa: ANN202 - a pytest param
    factory = request if callable(request) else (lambda _b, r=request: r)
    return pytest.param(rpc, factory, code, words, id=f"{rpc}-{case_id}")


def _availability_cases() -> Iterator:
    rpc = "GetAvailability"
    yield _case(rpc, _availability(basecamp_id="nowhere"), Code.NOT_FOUND, ["basecamp", "nowhere"], "unknown-basecamp")
    yield _case(rpc, _availability(basecamp_id="abbot-pass", resource_id=""), Code.NOT_FOUND, ["abbot-pass", "eu-alps"], "basecamp-of-another-region")
    yield _case(rpc, _availability(resource_id="argentiere-sauna"), Code.NOT_FOUND, ["no resource", "argentiere-sauna"], "unknown-resource")
    yield _case(rpc, _availability(resource_id="hoernli-guide"), Code.NOT_FOUND, ["no resource", "hoernli-guide"], "resource-of-another-basecamp")
    yield _case(rpc, _availability(basecamp_id=""), Code.INVALID_ARGUMENT, ["basecamp_id", "required"], "missing-basecamp")
    yield _case(rpc, _availability(basecamp_id=HUGE), Code.INVALID_ARGUMENT, ["basecamp_id", "10000 characters"], "oversized-basecamp")
    yield _case(rpc, _availability(resource_id=HUGE), Code.INVALID_ARGUMENT, ["resource_id", "10000 characters"], "oversized-resource")
    yield _case(rpc, _availability(resource_id="argentiere-guide\n"), Code.INVALID_ARGUMENT, ["resource_id", "control characters"], "control-characters")
    yield _case(rpc, _availability(nights=_nights(2, 2 + HORIZON_DAYS + 10)), Code.INVALID_ARGUMENT, ["at most"], "span-too-long")
    for name, (nights, words) in BAD_NIGHTS.items():
        yield _case(rpc, _availability(nights=nights), Code.INVALID_ARGUMENT, words, name)


def _hold_cases() -> Iterator:
    rpc = "PlaceHold"
    bad = Code.INVALID_ARGUMENT
    yield _case(rpc, _hold(basecamp_id="nowhere"), Code.NOT_FOUND, ["basecamp", "nowhere"], "unknown-basecamp")
    yield _case(rpc, _hold(basecamp_id="abbot-pass", resource_id="abbot-guide"), Code.NOT_FOUND, ["abbot-pass"], "basecamp-of-another-region")
    yield _case(rpc, _hold(resource_id="argentiere-sauna"), Code.NOT_FOUND, ["no resource", "argentiere-sauna"], "unknown-resource")
    yield _case(rpc, _hold(resource_id="hoernli-guide"), Code.NOT_FOUND, ["argentiere", "no resource", "hoernli-guide"], "resource-of-another-basecamp")
    yield _case(rpc, _hold(nights=_nights(-5, -3)), bad, ["nights.start", "in the past"], "nights-in-the-past")
    yield _case(rpc, _hold(nights=_nights(-1, 3)), bad, ["in the past"], "starting-yesterday")
    yield _case(rpc, _hold(nights=_nights(10, 11 + STAY_NIGHTS_MAX)), bad, [f"at most {STAY_NIGHTS_MAX} nights"], "stay-too-long")
    yield _case(rpc, _hold(nights=_nights(HORIZON_DAYS + 5, HORIZON_DAYS + 7)), bad, ["horizon"], "beyond-horizon")
    for name, (nights, words) in BAD_NIGHTS.items():
        yield _case(rpc, _hold(nights=nights), bad, words, name)
    yield _case(rpc, _hold(party_size=0), bad, ["party_size", "at least 1"], "party-size-zero")
    yield _case(rpc, _hold(party_size=-3), bad, ["party_size", "at least 1"], "party-size-negative")
    yield _case(rpc, _hold(party_size=GUIDE_CAPACITY + 1), bad, ["party_size", "capacity"], "party-size-above-capacity")
    yield _case(rpc, _hold(idempotency_key=""), bad, ["idempotency_key", "required"], "missing-key")
    yield _case(rpc, _hold(customer_id=""), bad, ["customer_id", "required"], "missing-customer")
    for field in ("idempotency_key", "customer_id", "basecamp_id", "resource_id"):
        yield _case(rpc, _hold(**{field: HUGE}), bad, [field, "10000 characters"], f"oversized-{field}")
    yield _case(rpc, _hold(idempotency_key="key\x00zero"), bad, ["idempotency_key", "control characters"], "key-control-characters")
    yield _case(rpc, _hold(customer_id="guest\x1b[31m"), bad, ["customer_id", "control characters"], "customer-control-characters")
    for ttl in (-1, NodeConfig.hold_ttl_min_seconds - 1, NodeConfig.hold_ttl_max_seconds + 1):
        yield _case(rpc, _hold(hold_ttl_seconds=ttl), bad, ["hold_ttl_seconds", "between"], f"ttl-{ttl}")


def _move_cases() -> Iterator:
    bad = Code.INVALID_ARGUMENT
    for rpc, build in (("ConfirmBooking", _confirm), ("ReleaseHold", _release), ("CancelBooking", _cancel)):
        yield _case(rpc, build(idempotency_key=""), bad, ["idempotency_key", "required"], "missing-key")
        yield _case(rpc, build(idempotency_key=HUGE), bad, ["idempotency_key", "10000 characters"], "oversized-key")
        yield _case(rpc, build(idempotency_key="k\x07"), bad, ["idempotency_key", "control characters"], "key-control-characters")
        yield _case(rpc, build(booking_id=""), bad, ["booking_id", "required"], "missing-booking-id")
        yield _case(rpc, build(booking_id="not-a-uuid"), bad, ["booking_id", "not a booking id"], "booking-id-not-a-uuid")
        yield _case(rpc, build(booking_id=HUGE), bad, ["booking_id", "10000 characters"], "oversized-booking-id")
        yield _case(rpc, build(booking_id="\t"), bad, ["booking_id", "control characters"], "booking-id-control-characters")
        if rpc != "ConfirmBooking":
            yield _case(rpc, build(reason=HUGE), bad, ["reason", "10000 characters"], "oversized-reason")
            yield _case(rpc, build(reason="gone\r\n"), bad, ["reason", "control characters"], "reason-control-characters")


def _read_cases() -> Iterator:
    bad = Code.INVALID_ARGUMENT
    rpc = "GetBooking"
    yield _case(rpc, pb.GetBookingRequest(booking_id=str(uuid.uuid4())), Code.NOT_FOUND, ["no booking"], "unknown-booking")
    yield _case(rpc, pb.GetBookingRequest(booking_id=""), bad, ["booking_id", "required"], "missing-booking-id")
    yield _case(rpc, pb.GetBookingRequest(booking_id="1234"), bad, ["booking_id", "not a booking id"], "booking-id-not-a-uuid")
    yield _case(rpc, pb.GetBookingRequest(booking_id=HUGE), bad, ["booking_id", "10000 characters"], "oversized-booking-id")
    yield _case(rpc, pb.GetBookingRequest(booking_id="\x00"), bad, ["booking_id", "control characters"], "booking-id-control-characters")
    rpc = "ListBookings"
    yield _case(rpc, pb.ListBookingsRequest(page_size=501), bad, ["page_size", "500"], "page-size-too-large")
    yield _case(rpc, pb.ListBookingsRequest(page_size=-1), bad, ["page_size"], "page-size-negative")
    yield _case(rpc, pb.ListBookingsRequest(page_token="garbage!!"), bad, ["page_token"], "garbage-page-token")
    yield _case(rpc, pb.ListBookingsRequest(page_token="aGVsbG8="), bad, ["page_token"], "base64-garbage-page-token")
    yield _case(rpc, pb.ListBookingsRequest(page_token="MjAyNi0wMS0wMXxub3QtYS11dWlk"), bad, ["page_token"], "forged-page-token")
    yield _case(rpc, pb.ListBookingsRequest(page_token=HUGE), bad, ["page_token", "10000 characters"], "oversized-page-token")
    yield _case(rpc, pb.ListBookingsRequest(page_token="\x1b"), bad, ["page_token", "control characters"], "page-token-control-characters")
    yield _case(rpc, pb.ListBookingsRequest(state=99), bad, ["state", "99"], "invalid-state-enum")
    yield _case(rpc, pb.ListBookingsRequest(state=-1), bad, ["state"], "negative-state-enum")
    yield _case(rpc, pb.ListBookingsRequest(basecamp_id="nowhere"), Code.NOT_FOUND, ["basecamp", "nowhere"], "unknown-basecamp")
    yield _case(rpc, pb.ListBookingsRequest(basecamp_id=HUGE), bad, ["basecamp_id", "10000 characters"], "oversized-basecamp")
    for name in ("reversed-nights", "month-13", "missing-end"):
        nights, words = BAD_NIGHTS[name]
        yield _case(rpc, pb.ListBookingsRequest(nights=nights), bad, words, name)


def _existing_bookings(client: BookingClient) -> Bookings:
    held = client.place_hold(BASECAMP, GUIDE, night(20), night(22), 1, "existing").booking_id
    confirmed = client.place_hold(BASECAMP, GUIDE, night(20), night(22), 1, "existing").booking_id
    client.confirm(confirmed)
    return Bookings(held=held, confirmed=confirmed)


@pytest.fixture(scope="module")
def shared_node(fresh_database, certs: SessionCerts) -> Iterator[tuple[RegionalNode, str, Bookings]]:
    """One node and database for the whole table: no case may write, and each checks that
    around its own call, so sharing them is safe and keeps the table fast."""
    db = fresh_database("eu-alps")
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="bad-input-node", database_url=db.url, certs_dir=certs.dir))
    node.start()
    try:
        with BookingClient(node.address, transport=certs.desk) as client:
            existing = _existing_bookings(client)
        yield node, db.url, existing
    finally:
        node.stop(grace_seconds=1)


@pytest.fixture(scope="module")
def stub(shared_node, certs: SessionCerts) -> Iterator[pb_grpc.BookingServiceStub]:
    with certs.desk.channel(shared_node[0].address) as channel:
        yield pb_grpc.BookingServiceStub(channel)


@pytest.mark.parametrize(("rpc", "request_for", "code", "words"), [*_availability_cases(), *_hold_cases(), *_move_cases(), *_read_cases()])
def test_malformed_request_gets_its_status_and_a_readable_message_and_writes_nothing(shared_node, stub, rpc, request_for, code, words) -> None:
    _, url, existing = shared_node
    before, stored = snapshot(url), bookings_by_id(url)

    result = outcome(lambda: getattr(stub, rpc)(request_for(existing), timeout=10))

    assert result.code is code, (result.code, result.details)
    missing = [word for word in words if word not in result.details]
    assert not missing, f"{result.details!r} lacks {missing}"
    assert len(result.details) < 1000 and "Traceback" not in result.details
    assert snapshot(url) == before
    assert bookings_by_id(url) == stored


@pytest.mark.parametrize(("rpc", "build"), [("ConfirmBooking", _confirm), ("ReleaseHold", _release), ("CancelBooking", _cancel)])
def test_move_of_an_unknown_booking_is_not_found_and_records_only_that_refusal(shared_node, stub, rpc, build) -> None:
    _, url, existing = shared_node
    request = build(booking_id=str(uuid.uuid4()), idempotency_key=f"unknown-{rpc}")(existing)
    before, stored = snapshot(url), bookings_by_id(url)
    # The refusal is the key's first result (invariant 7): recorded once, nothing else written.
    recorded = before.plus(idempotency_records=1)

    first = outcome(lambda: getattr(stub, rpc)(request, timeout=10))
    assert first.code is Code.NOT_FOUND and "no booking" in first.details, (first.code, first.details)
    assert snapshot(url) == recorded

    again = outcome(lambda: getattr(stub, rpc)(request, timeout=10))
    assert (again.code, again.details) == (first.code, first.details)
    assert snapshot(url) == recorded
    assert bookings_by_id(url) == stored


def test_confirming_a_lapsed_hold_is_failed_precondition_and_leaves_it_unconfirmed(alps_engine, alps_client, alps_db) -> None:
    lapsed = place_lapsed_hold(alps_engine, BASECAMP, GUIDE, night(20), night(22), 2)
    before, stored = snapshot(alps_db.url), bookings_by_id(alps_db.url)

    result = outcome(lambda: alps_client.confirm(lapsed.booking_id))

    assert result.code is Code.FAILED_PRECONDITION, (result.code, result.details)
    assert "expired" in result.details and lapsed.booking_id in result.details, result.details
    assert bookings_by_id(alps_db.url) == stored
    assert snapshot(alps_db.url) == before.plus(idempotency_records=1)


#: A valid request per RPC, given bookings to act on.
_VALID: dict[str, Callable[[Bookings], object]] = {
    "GetAvailability": lambda b: _availability(),
    "PlaceHold": lambda b: _hold(idempotency_key=str(uuid.uuid4())),
    "ConfirmBooking": lambda b: pb.ConfirmBookingRequest(idempotency_key=str(uuid.uuid4()), booking_id=b.held),
    "ReleaseHold": lambda b: pb.ReleaseHoldRequest(idempotency_key=str(uuid.uuid4()), booking_id=b.held),
    "CancelBooking": lambda b: pb.CancelBookingRequest(idempotency_key=str(uuid.uuid4()), booking_id=b.confirmed),
    "GetBooking": lambda b: pb.GetBookingRequest(booking_id=b.held),
    "ListBookings": lambda b: pb.ListBookingsRequest(),
}
SHORT_DEADLINES_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)


@pytest.mark.parametrize("rpc", sorted(_VALID))
def test_a_deadline_too_short_is_deadline_exceeded_never_internal(alps_node, alps_client, alps_db, certs, rpc) -> None:
    existing = _existing_bookings(alps_client)
    with certs.desk.channel(alps_node.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        call = getattr(pb_grpc.BookingServiceStub(channel), rpc)

        # A 0.1 ms deadline almost always runs out before the answer; a fast GetBooking on a
        # warm channel can still make it, and that answer is right too. Never anything else.
        expired = outcome(lambda: call(_VALID[rpc](existing), timeout=0.0001))
        assert expired.code in (Code.DEADLINE_EXCEEDED, Code.OK), (expired.code, expired.details)
        # Deadlines that may run out anywhere on the way, in the server too: never a crash.
        for seconds in SHORT_DEADLINES_SECONDS:
            result = outcome(lambda: call(_VALID[rpc](existing), timeout=seconds))
            assert result.code not in (Code.INTERNAL, Code.UNKNOWN), (seconds, result.code, result.details)
    # Whatever a cut-short call managed to do, it did whole.
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
