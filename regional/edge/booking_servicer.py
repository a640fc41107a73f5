"""BookingService: each method unpacks the request, calls one domain function, packs the reply.

Every method serves its caller (:func:`_caller`: the call's identity, from
``ridgeline.trust.identity.current()``, as the booking domain's :class:`~..booking.access.Caller`):
its actor goes on the record of every change, and the scoped rules of ``ridgeline.trust.policy``
decide which bookings it reaches. A scoped desk booking outside its basecamps is
PERMISSION_DENIED before any write (the basecamp is public, the refusal reveals nothing).
A booking out of a caller's reach (another agency's, outside a desk's scope) is NOT_FOUND
with the message of a booking that does not exist, for reads and changes alike: an
agency must not learn, by probing ids, that another agency's booking exists. Nothing is
written for it, and the check runs in the transaction of the change it guards.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import grpc
from sqlalchemy import Connection, Engine

from ridgeline import tracing
from ridgeline.regional.booking import holds, ownership, queries, transitions
from ridgeline.regional.booking.access import Caller, caller_of
from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.booking.model import Booking
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge import convert, validation
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.errors import DeadlineExceeded, NotFound
from ridgeline.regional.settlement import deposits
from ridgeline.regional.settlement import rows as settlements
from ridgeline.regional.storage.db import read_transaction
from ridgeline.regional.workflows import steps
from ridgeline.routing.clock import Clock, utc_now
from ridgeline.routing.keeper import Ownership
from ridgeline.trust import identity
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

#: Places a validated hold with the lease epoch, before the deadline (group commit, or the single path).
HoldPlacer = Callable[[holds.HoldRequest, int, "float | None"], Booking]
#: Book with wait answers this long before the caller's deadline, so the answer arrives in time.
_WAIT_MARGIN_SECONDS = 0.2
#: How long Book waits for settlement when the caller set no deadline.
_WAIT_MAX_SECONDS = 30.0


class BookingServicer(pb_grpc.BookingServiceServicer):
    """Reads are served by any node of the region; writes only by the basecamp's lease holder.

    A write for a basecamp this node does not hold is refused before any SQL with the
    owner as a hint (the client caches it and goes there directly next time). Forwarding
    was rejected: it doubles the hops and CPU of every misrouted call, hides ownership
    from clients that could cache it, and can loop while a basecamp moves.
    """

    def __init__(
        self,
        config: NodeConfig,
        engine: Engine,
        catalog: CatalogView,
        place: HoldPlacer,
        owned: Ownership,
        clock: Clock = utc_now,
        *,
        booked: threading.Event | None = None,
    ) -> None:
        self._config = config
        self._booked = booked if booked is not None else threading.Event()
        self._engine = engine
        self._catalog = catalog
        self._place = place
        self._owned = owned
        self._clock = clock

    @guarded
    def ListBasecamps(self, request: pb.ListBasecampsRequest, context: grpc.ServicerContext) -> pb.ListBasecampsResponse:
        return pb.ListBasecampsResponse(basecamps=[convert.basecamp_pb(b) for b in self._catalog.basecamps()])

    @guarded
    def GetAvailability(self, request: pb.GetAvailabilityRequest, context: grpc.ServicerContext) -> pb.GetAvailabilityResponse:
        query = validation.availability_query(request, self._catalog, self._config)
        resource_ids, now = [r.resource_id for r in query.resources], self._clock()
        nights = read_transaction(self._engine, lambda conn: queries.availability(conn, resource_ids, query.nights, now))
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
        hold = validation.hold_request(request, self._catalog, self._config, now, self._caller())
        return convert.booking_pb(self._place(hold, self._epoch_for(hold.basecamp_id), deadline_of(context)))

    @guarded
    def Book(self, request: pb.BookRequest, context: grpc.ServicerContext) -> pb.Booking:
        now = self._clock()
        caller = self._caller()
        # The settlement row keeps this call's trace, for the settle flow to continue it.
        hold = validation.hold_request(request, self._catalog, self._config, now, caller)
        if traceparent := tracing.current_traceparent():  # "" untraced: no copy on the hot path
            hold = dataclasses.replace(hold, trace_parent=traceparent)
        deadline = deadline_of(context)
        booking = holds.place_hold(self._engine, hold, epoch=self._epoch_for(hold.basecamp_id), now=now, deadline=deadline)
        self._booked.set()  # committed: settlement may take it now
        if not request.wait:  # the first result, as every repeat of this key answers it
            return convert.booking_pb(booking, settlements.awaiting(booking))
        until = deadline - _WAIT_MARGIN_SECONDS if deadline is not None else time.monotonic() + _WAIT_MAX_SECONDS
        settlements.wait_until_settled(self._engine, booking.booking_id, deadline=until)
        return self._booking_reply(booking.booking_id, caller)

    @guarded
    def ConfirmBooking(self, request: pb.ConfirmBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.CONFIRM, request.idempotency_key, request.booking_id, "", context)

    @guarded
    def ReleaseHold(self, request: pb.ReleaseHoldRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.RELEASE, request.idempotency_key, request.booking_id, request.reason, context)

    @guarded
    def CancelBooking(self, request: pb.CancelBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._move(transitions.CANCEL, request.idempotency_key, request.booking_id, request.reason, context, also=deposits.cancel_effects)

    @guarded
    def GetBooking(self, request: pb.GetBookingRequest, context: grpc.ServicerContext) -> pb.Booking:
        return self._booking_reply(validation.booking_id(request.booking_id), self._caller())

    @guarded
    def ListBookings(self, request: pb.ListBookingsRequest, context: grpc.ServicerContext) -> pb.ListBookingsResponse:
        where, page_size, token = validation.booking_filter(request, self._catalog, self._config)
        now, caller = self._clock(), self._caller()

        def read(conn: Connection) -> tuple[list[Booking], str, dict[str, settlements.Settlement], dict[str, list[steps.Step]]]:
            page, next_token = queries.list_bookings(conn, where, caller=caller, page_size=page_size, page_token=token, now=now)
            ids = [b.booking_id for b in page]
            return page, next_token, settlements.get(conn, ids), steps.of(conn, ids)

        page, next_token, payments, taken = read_transaction(self._engine, read)
        replies = [convert.booking_pb(b, payments.get(b.booking_id), taken.get(b.booking_id, ())) for b in page]
        return pb.ListBookingsResponse(bookings=replies, next_page_token=next_token)

    def _caller(self) -> Caller:
        """Who this call is for (an ``--insecure`` server's caller is anonymous, and unrestricted)."""
        return caller_of(identity.current(), self._config.region)

    def _epoch_for(self, basecamp_id: str) -> int:
        """The lease epoch to write with, or NotOwner (with the owner) before any write."""
        epoch = self._owned.epoch_of(basecamp_id)
        if epoch is None:
            raise read_transaction(self._engine, lambda conn: ownership.not_owner(conn, basecamp_id))
        return epoch

    def _booking_reply(self, booking_id: str, caller: Caller) -> pb.Booking:
        """The booking as stored now, with its payment when it has one (one snapshot, retried
        whole if SERIALIZABLE cancels it against concurrent settlement writes); NOT_FOUND,
        worded as for a booking that does not exist, when ``caller`` does not reach it."""

        def read(conn: Connection) -> pb.Booking:
            booking = queries.get_booking(conn, booking_id)
            if booking is None or not caller.reaches(basecamp_id=booking.basecamp_id, created_by=booking.created_by):
                raise NotFound(transitions.not_found_message(booking_id))
            return convert.booking_pb(booking, settlements.get(conn, [booking_id]).get(booking_id), steps.of(conn, [booking_id]).get(booking_id, ()))

        return read_transaction(self._engine, read)

    def _move(
        self,
        move: transitions.Move,
        key: str,
        booking_id: str,
        reason: str,
        context: grpc.ServicerContext,
        also: Callable[[Connection, Booking], None] | None = None,
    ) -> pb.Booking:
        caller = self._caller()
        booking = transitions.apply_move(
            self._engine,
            move,
            booking_id=validation.booking_id(booking_id),
            idempotency_key=caller.own_key(validation.idempotency_key(key)),
            reason=validation.reason(reason),
            caller=caller,
            fence=self._owned.fence(),
            now=self._clock(),
            deadline=deadline_of(context),
            also=also,
        )
        return convert.booking_pb(booking)


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a monotonic instant; refuses work that is already late."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExceeded("the call's deadline had passed before work started")
    return time.monotonic() + remaining
