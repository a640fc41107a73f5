"""A BookingService client that honours deadlines and retries what is safe to retry.

Every mutating call carries an idempotency key, generated here when the caller gives
none and reused on every retry of that call, so a retry after a lost reply never causes
a second effect (invariant 7). UNAVAILABLE and ABORTED are retried with capped, jittered
exponential backoff, never past the call's deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import grpc

from ridgeline.routing.retry import RetryPolicy
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

Response = TypeVar("Response")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def night_range(start: date, end: date) -> pb.NightRange:
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


class BookingClient:
    """One node's BookingService over one channel."""

    def __init__(
        self,
        target: str,
        *,
        timeout_seconds: float = 10.0,
        attempts_max: int = 5,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
    ) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.BookingServiceStub(self._channel)
        self._timeout_seconds = timeout_seconds
        self._retry = RetryPolicy(attempts_max, backoff_base_seconds, backoff_cap_seconds)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> BookingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_basecamps(self) -> pb.ListBasecampsResponse:
        return self._call(self._stub.ListBasecamps, pb.ListBasecampsRequest())

    def availability(self, basecamp_id: str, start: date, end: date, resource_id: str = "") -> pb.GetAvailabilityResponse:
        request = pb.GetAvailabilityRequest(basecamp_id=basecamp_id, resource_id=resource_id, nights=night_range(start, end))
        return self._call(self._stub.GetAvailability, request)

    def place_hold(
        self,
        basecamp_id: str,
        resource_id: str,
        start: date,
        end: date,
        party_size: int,
        customer_id: str,
        *,
        hold_ttl_seconds: int = 0,
        idempotency_key: str | None = None,
    ) -> pb.Booking:
        request = hold_request(
            basecamp_id, resource_id, start, end, party_size, customer_id, hold_ttl_seconds=hold_ttl_seconds, idempotency_key=idempotency_key
        )
        return self._call(self._stub.PlaceHold, request)

    def book(
        self,
        basecamp_id: str,
        resource_id: str,
        start: date,
        end: date,
        party_size: int,
        customer_id: str,
        *,
        hold_ttl_seconds: int = 0,
        wait: bool = False,
        idempotency_key: str | None = None,
    ) -> pb.Booking:
        """A hold that settlement charges and confirms; ``wait`` returns once it is settled."""
        request = book_request(
            basecamp_id, resource_id, start, end, party_size, customer_id,
            hold_ttl_seconds=hold_ttl_seconds, wait=wait, idempotency_key=idempotency_key,
        )
        return self._call(self._stub.Book, request)

    def confirm(self, booking_id: str, *, idempotency_key: str | None = None) -> pb.Booking:
        request = pb.ConfirmBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id)
        return self._call(self._stub.ConfirmBooking, request)

    def release(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = pb.ReleaseHoldRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)
        return self._call(self._stub.ReleaseHold, request)

    def cancel(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> pb.Booking:
        request = pb.CancelBookingRequest(idempotency_key=idempotency_key or new_idempotency_key(), booking_id=booking_id, reason=reason)
        return self._call(self._stub.CancelBooking, request)

    def get_booking(self, booking_id: str) -> pb.Booking:
        return self._call(self._stub.GetBooking, pb.GetBookingRequest(booking_id=booking_id))

    def list_bookings(self, request: pb.ListBookingsRequest) -> pb.ListBookingsResponse:
        return self._call(self._stub.ListBookings, request)

    def _call(self, method: Callable[..., Response], request: object) -> Response:
        deadline = time.monotonic() + self._timeout_seconds
        for attempt in range(1, self._retry.attempts_max + 1):
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as error:
                pause = self._retry.backoff_seconds(attempt)
                retryable = error.code() in RETRYABLE_CODES and attempt < self._retry.attempts_max
                if not retryable or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
