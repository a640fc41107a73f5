"""BookingService: each method unpacks the request, calls one domain function, packs the reply."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import grpc
from sqlalchemy import Engine

from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

from . import convert, holds, queries, transitions, validation
from .catalog import CatalogView
from .config import NodeConfig
from .errors import DeadlineExceeded, NotFound
from .model import Booking
from .status import guarded

Clock = Callable[[], datetime]
#: Places a validated hold before the deadline (group commit, or the single path).
HoldPlacer = Callable[[holds.HoldRequest, "float | None"], Booking]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class BookingServicer(pb_grpc.BookingServiceServicer):
    def __init__(self, config: NodeConfig, engine: Engine, catalog: CatalogView, place: HoldPlacer, clock: Clock = utc_now) -> None:
        self._config = config
        self._engine = engine
        self._catalog = catalog
        self._place = place
        self._clock = clock

    @guarded
    def ListBasecamps(self, request: pb.ListBasecampsRequest, context: grpc.ServicerContext) -> pb.ListBasecampsResponse:
        return pb.ListBasecampsResponse(basecamps=[convert.basecamp_pb(b) for b in self._catalog.basecamps()])

    @guarded
    def GetAvailability(self, request: pb.GetAvailabilityRequest, context: grpc.ServicerContext) -> pb.GetAvailabilityResponse:
        query = validation.availability_query(request, self._catalog, self._config)
        with self._engine.connect() as conn:
            nights = queries.availability(conn, [r.resource_id for r in query.resources], query.nights, self._clock())
        return pb.GetAvailabilityResponse(
            basecamp_id=query.basecamp.basecamp_id,
            resources=[
                pb.ResourceAvailability(resource=convert.resource_pb(r), nights=[convert.night_pb(n) for n in nights[r.resource_id]])
                for r in query.resources
            ],
        )

    @guarded
    def PlaceHold(self, request: pb.PlaceHoldRequest, context: grpc.ServicerContext) -> pb.Booking:
        now = self._clock()
        hold = validation.hold_request(request, self._catalog, self._config, now)
        return convert.booking_pb(self._place(hold, _deadline(context)))

    @guarded
    def ConfirmBooking(self, request: pb.ConfirmBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.CONFIRM, request.idempotency_key, request.booking_id, "", context)

    @guarded
    def ReleaseHold(self, request: pb.ReleaseHoldRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.RELEASE, request.idempotency_key, request.booking_id, request.reason, context)

    @guarded
    def CancelBooking(self, request: pb.CancelBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.CANCEL, request.idempotency_key, request.booking_id, request.reason, context)

    @guarded
    def GetBooking(self, request: pb.GetBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        booking_id = validation.booking_id(request.booking_id)
        with self._engine.connect() as conn:
            booking = queries.get_booking(conn, booking_id)
        if booking is None:
            raise NotFound(f"no booking {booking_id}")
        return convert.booking_pb(booking)

    @guarded
    def ListBookings(self, request: pb.ListBookingsRequest, context: grpc.ServicerContext) -> pb.ListBookingsResponse:
        where, page_size, token = validation.booking_filter(request, self._catalog, self._config)
        with self._engine.connect() as conn:
            page, next_token = queries.list_bookings(conn, where, page_size=page_size, page_token=token)
        return pb.ListBookingsResponse(bookings=[convert.booking_pb(b) for b in page], next_page_token=next_token)

    def _move(self, move: transitions.Move, key: str, booking_id: str, reason: str, context: grpc.ServicerContext) -> pb.Booking:
        booking = transitions.apply_move(
            self._engine,
            move,
            booking_id=validation.booking_id(booking_id),
            idempotency_key=validation.idempotency_key(key),
            reason=validation.reason(reason),
            now=self._clock(),
            deadline=_deadline(context),
        )
        return convert.booking_pb(booking)


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a monotonic instant; refuses work that is already late."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExceeded("the call's deadline had passed before work started")
    return time.monotonic() + remaining


#: Public name for the other servicers of a node (TrekLegService).
deadline_of = _deadline
