"""BookingService requests, built in one place for every caller (desks, the coordinator, drills).

Every mutating request carries an idempotency key, generated here when the caller gives
none; a client reuses the request (and so the key) on every retry of that call, so a retry
after a lost reply never causes a second effect (invariant 7).
"""

from __future__ import annotations

import uuid
from datetime import date

from ridgeline.v1 import booking_pb2 as pb


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def night_range(start: date, end: date) -> pb.NightRange:
    """The nights from ``start`` up to (not including) ``end``; the node validates the range."""
    return pb.NightRange(
        start=pb.Date(year=start.year, month=start.month, day=start.day),
        end=pb.Date(year=end.year, month=end.month, day=end.day),
    )


def hold_request(
    basecamp_id: str, resource_id: str, start: date, end: date, party_size: int, customer_id: str,
    *, hold_ttl_seconds: int = 0, idempotency_key: str | None = None,
) -> pb.PlaceHoldRequest:
    """A PlaceHold request with a fresh idempotency key unless one is given."""
    return pb.PlaceHoldRequest(**_stay(basecamp_id, resource_id, start, end, party_size, customer_id, hold_ttl_seconds, idempotency_key))


def book_request(
    basecamp_id: str, resource_id: str, start: date, end: date, party_size: int, customer_id: str,
    *, hold_ttl_seconds: int = 0, wait: bool = False, idempotency_key: str | None = None,
) -> pb.BookRequest:
    """A Book request (a hold that settlement charges and confirms)."""
    return pb.BookRequest(**_stay(basecamp_id, resource_id, start, end, party_size, customer_id, hold_ttl_seconds, idempotency_key), wait=wait)


def availability_request(basecamp_id: str, start: date, end: date, resource_id: str = "") -> pb.GetAvailabilityRequest:
    """Availability of one basecamp (or one of its resources) over the nights."""
    return pb.GetAvailabilityRequest(basecamp_id=basecamp_id, resource_id=resource_id, nights=night_range(start, end))


def confirm_request(booking_id: str, *, idempotency_key: str | None = None) -> pb.ConfirmBookingRequest:
    return pb.ConfirmBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id)


def release_request(booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.ReleaseHoldRequest:
    return pb.ReleaseHoldRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)


def cancel_request(booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.CancelBookingRequest:
    return pb.CancelBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)


def _stay(
    basecamp_id: str, resource_id: str, start: date, end: date, party_size: int, customer_id: str, hold_ttl_seconds: int, key: str | None
) -> dict[str, object]:
    """The fields PlaceHold and Book share."""
    return {
        "idempotency_key": key or new_idempotency_key(),
        "basecamp_id": basecamp_id,
        "resource_id": resource_id,
        "nights": night_range(start, end),
        "party_size": party_size,
        "customer_id": customer_id,
        "hold_ttl_seconds": hold_ttl_seconds,
    }
