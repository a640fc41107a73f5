"""Where a desk call goes: straight to one node, or by the cluster's ownership.

A :class:`Route` is the strategy behind the one desk surface (:mod:`.client`). Both
routes retry UNAVAILABLE and ABORTED with capped, jittered backoff (:mod:`.retry`), never
past the call's deadline, and resend the same request, so a mutating call keeps its
idempotency key on every try (invariant 7).

* :class:`DirectRoute` talks to one node over one channel; each try gets all the time
  left.
* :class:`OwnerRoute` sends a write to the basecamp's owner and a read to any live node
  of its region, by a :class:`.discovery.ClusterView`. A FAILED_PRECONDITION carrying an
  OwnerHint goes to the hinted owner at once; UNAVAILABLE (a dead node, a basecamp
  between owners during a failover) refreshes the region's view from another node and
  retries; each try gets at most half the time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc

from ridgeline.routing.discovery import ClusterView, owner_hint
from ridgeline.routing.retry import RetryPolicy
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

Response = TypeVar("Response")

#: Picks the RPC of a stub, e.g. ``lambda stub: stub.PlaceHold``.
Call = Callable[[pb_grpc.BookingServiceStub], Callable[..., Response]]

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})

#: Below twice this much time left, a try gets all of it (no per-try split).
_PER_TRY_FLOOR_SECONDS = 0.25


class Route(Protocol):
    """How the desk surface reaches the node that answers a call."""

    def write(self, call: Call[pb.Booking], request: object, basecamp_id: str) -> pb.Booking:
        """A mutating call that makes a booking of the basecamp (a hold, a booked stay)."""

    def write_booking(self, call: Call[pb.Booking], request: object, booking_id: str) -> pb.Booking:
        """A mutating call on an existing booking (confirm, release, cancel)."""

    def read(self, call: Call[Response], request: object, *, basecamp_id: str | None = None, region: str | None = None) -> Response:
        """A read in ``region``, else in the basecamp's region."""

    def read_each_region(self, call: Call[Response], request: object, region: str | None = None) -> list[Response]:
        """The same read in every region (or only ``region``), region by region."""

    def get_booking(self, booking_id: str) -> pb.Booking: ...

    def close(self) -> None: ...


class DirectRoute:
    """Every call to one node, whatever it is addressed to."""

    def __init__(self, target: str, *, transport: Transport, timeout_seconds: float, retry: RetryPolicy) -> None:
        self.target = target
        self._channel = transport.channel(target)
        self._stub = pb_grpc.BookingServiceStub(self._channel)
        self._timeout_seconds = timeout_seconds
        self._retry = retry

    def close(self) -> None:
        self._channel.close()

    def write(self, call: Call[pb.Booking], request: object, basecamp_id: str) -> pb.Booking:
        return self._call(call, request)

    def write_booking(self, call: Call[pb.Booking], request: object, booking_id: str) -> pb.Booking:
        return self._call(call, request)

    def read(self, call: Call[Response], request: object, *, basecamp_id: str | None = None, region: str | None = None) -> Response:
        return self._call(call, request)

    def read_each_region(self, call: Call[Response], request: object, region: str | None = None) -> list[Response]:
        """The node's own region only: a node answers for the region it serves."""
        return [self._call(call, request)]

    def get_booking(self, booking_id: str) -> pb.Booking:
        return self._call(lambda stub: stub.GetBooking, pb.GetBookingRequest(booking_id=booking_id))

    def _call(self, call: Call[Response], request: object) -> Response:
        deadline = time.monotonic() + self._timeout_seconds
        for attempt in range(1, self._retry.attempts_max + 1):
            remaining = deadline - time.monotonic()
            try:
                return call(self._stub)(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as error:
                pause = self._retry.backoff_seconds(attempt)
                retryable = error.code() in RETRYABLE_CODES and attempt < self._retry.attempts_max
                if not retryable or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


class OwnerRoute:
    """Writes to the basecamp's owner, reads to any live node of its region, by the view."""

    def __init__(self, view: ClusterView, *, timeout_seconds: float, retry: RetryPolicy, hops_max: int) -> None:
        self.view = view
        self._timeout_seconds = timeout_seconds
        self._retry = retry
        self._hops_max = hops_max

    def close(self) -> None:
        self.view.close()

    def write(self, call: Call[pb.Booking], request: object, basecamp_id: str) -> pb.Booking:
        """Calls the basecamp's owner; the new booking's basecamp is remembered by its id."""
        booking = self._write(basecamp_id, call, request)
        self.view.remember_booking(booking.booking_id, booking.basecamp_id)
        return booking

    def write_booking(self, call: Call[pb.Booking], request: object, booking_id: str) -> pb.Booking:
        """Calls the owner of the booking's basecamp (looked up once, then remembered)."""
        basecamp_id = self.view.basecamp_of_booking(booking_id)
        if basecamp_id is None:
            basecamp_id = self._find_booking(booking_id, time.monotonic() + self._timeout_seconds).basecamp_id
        return self._write(basecamp_id, call, request)

    def read(self, call: Call[Response], request: object, *, basecamp_id: str | None = None, region: str | None = None) -> Response:
        deadline = time.monotonic() + self._timeout_seconds
        name = region or (self.view.region_of(basecamp_id) if basecamp_id is not None else None)
        if name is None:
            raise ValueError("a routed read needs a basecamp or a region (list_bookings: one in the request, or region=)")
        return self._read(name, call, request, deadline)

    def read_each_region(self, call: Call[Response], request: object, region: str | None = None) -> list[Response]:
        deadline = time.monotonic() + self._timeout_seconds
        return [self._read(name, call, request, deadline) for name in ([region] if region else self.view.regions())]

    def get_booking(self, booking_id: str) -> pb.Booking:
        return self._find_booking(booking_id, time.monotonic() + self._timeout_seconds)

    def _write(self, basecamp_id: str, call: Call[Response], request: object) -> Response:
        """Follows owner hints and rides out failovers within one deadline."""
        deadline = time.monotonic() + self._timeout_seconds
        region = self.view.region_of(basecamp_id)
        return self._routed(region, lambda: self.view.owner(region, basecamp_id), call, request, deadline, hinted=basecamp_id)

    def _read(self, region: str, call: Call[Response], request: object, deadline: float) -> Response:
        """Calls any live node of the region; UNAVAILABLE moves on to another one."""
        self.view.ensure(deadline)
        return self._routed(region, lambda: self.view.any_member(region), call, request, deadline, hinted=None)

    def _find_booking(self, booking_id: str, deadline: float) -> pb.Booking:
        """GetBooking in the booking's region, found by asking each region once."""
        request = pb.GetBookingRequest(booking_id=booking_id)
        known = self.view.basecamp_of_booking(booking_id)
        regions = [self.view.region_of(known)] if known else self.view.regions()
        last: grpc.RpcError | None = None
        for region in regions:
            try:
                booking = self._read(region, lambda stub: stub.GetBooking, request, deadline)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                last = error
                continue
            self.view.remember_booking(booking_id, booking.basecamp_id)
            return booking
        assert last is not None, "the cluster has at least one region"
        raise last

    def _routed(self, region: str, pick: Callable[[], str], call: Call[Response], request: object, deadline: float, *, hinted: str | None) -> Response:
        """The retry loop: owner hints for ``hinted`` (a basecamp) are followed at once, at
        most ``hops_max`` times; UNAVAILABLE and ABORTED back off within the deadline, and
        UNAVAILABLE also drops the address and refreshes the region's view.

        Each try gets at most half the time left (a per-try timeout): a node that hangs
        instead of refusing (paused, overloaded, partitioned) costs one try, not the whole
        deadline, and is dropped like an unavailable one. Retrying a write after a try
        timed out is safe: the same idempotency key answers the first result if it landed.
        """
        attempt, hops = 0, 0
        while True:
            target = pick()
            remaining = deadline - time.monotonic()
            per_try = remaining / 2 if remaining > 2 * _PER_TRY_FLOOR_SECONDS else remaining
            try:
                return call(self.view.booking_stub(target))(request, timeout=max(per_try, 0.001))
            except grpc.RpcError as error:
                code = error.code()
                hint = owner_hint(error) if hinted and code is grpc.StatusCode.FAILED_PRECONDITION else None
                if hinted and hint is not None and hint.address and hops < self._hops_max:
                    hops += 1
                    self.view.set_owner(region, hinted, hint.address)
                    continue
                hung = code is grpc.StatusCode.DEADLINE_EXCEEDED
                if code is grpc.StatusCode.UNAVAILABLE or hung:
                    self.view.forget(region, target)
                if code not in RETRYABLE_CODES and not (hung and time.monotonic() < deadline):
                    raise
                attempt += 1
                pause = 0.0 if hung else self._retry.backoff_seconds(attempt)
                if attempt >= self._retry.attempts_max or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                if code is not grpc.StatusCode.ABORTED:
                    self.view.refresh_region(region, deadline, avoid=target)
