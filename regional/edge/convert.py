"""Domain values to and from their ``ridgeline.v1`` messages; no logic beyond the mapping."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ridgeline import tracing
from ridgeline.regional.booking.catalog import Basecamp, Resource
from ridgeline.regional.booking.model import Booking, BookingState, NightAvailability, Nights, ResourceKind
from ridgeline.regional.settlement.rows import Settlement, SettlementState
from ridgeline.regional.trek_legs.participant import Leg, LegState
from ridgeline.regional.workflows.steps import Step
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

_STATE_TO_PB = {
    BookingState.HELD: pb.BOOKING_STATE_HELD,
    BookingState.CONFIRMED: pb.BOOKING_STATE_CONFIRMED,
    BookingState.RELEASED: pb.BOOKING_STATE_RELEASED,
    BookingState.EXPIRED: pb.BOOKING_STATE_EXPIRED,
    BookingState.CANCELLED: pb.BOOKING_STATE_CANCELLED,
}
STATE_FROM_PB = {value: key for key, value in _STATE_TO_PB.items()}

_PAYMENT_TO_PB = {
    SettlementState.AWAITING_PAYMENT: pb.PAYMENT_STATE_AWAITING_PAYMENT,
    SettlementState.CONFIRMED: pb.PAYMENT_STATE_CONFIRMED,
    SettlementState.REFUNDING: pb.PAYMENT_STATE_REFUNDING,
    SettlementState.REFUNDED: pb.PAYMENT_STATE_REFUNDED,
    SettlementState.RELEASED: pb.PAYMENT_STATE_RELEASED,
}

_LEG_STATE_TO_PB = {
    LegState.PREPARED: tpb.LEG_STATE_PREPARED,
    LegState.COMMITTED: tpb.LEG_STATE_COMMITTED,
    LegState.ABORTED: tpb.LEG_STATE_ABORTED,
    LegState.CANCELLED: tpb.LEG_STATE_CANCELLED,
}

_KIND_TO_PB = {
    ResourceKind.HUT_BED: pb.RESOURCE_KIND_HUT_BED,
    ResourceKind.GUIDED_SLOT: pb.RESOURCE_KIND_GUIDED_SLOT,
    ResourceKind.EQUIPMENT_LOCKER: pb.RESOURCE_KIND_EQUIPMENT_LOCKER,
}


def date_pb(value: date) -> pb.Date:
    return pb.Date(year=value.year, month=value.month, day=value.day)


def nights_pb(nights: Nights) -> pb.NightRange:
    return pb.NightRange(start=date_pb(nights.start), end=date_pb(nights.end))


def timestamp_pb(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def resource_pb(resource: Resource) -> pb.Resource:
    return pb.Resource(
        resource_id=resource.resource_id,
        kind=_KIND_TO_PB[resource.kind],
        name=resource.name,
        capacity=resource.capacity,
        unit_price_cents=resource.unit_price_cents,
        currency=resource.currency,
    )


def basecamp_pb(basecamp: Basecamp) -> pb.Basecamp:
    return pb.Basecamp(
        basecamp_id=basecamp.basecamp_id,
        name=basecamp.name,
        region=basecamp.region,
        time_zone=basecamp.time_zone,
        resources=[resource_pb(r) for r in basecamp.resources],
    )


def night_pb(night: NightAvailability) -> pb.NightAvailability:
    return pb.NightAvailability(
        night=date_pb(night.night), capacity=night.capacity, held=night.held, confirmed=night.confirmed, free=night.free
    )


def payment_pb(settlement: Settlement) -> pb.Payment:
    message = pb.Payment(
        state=_PAYMENT_TO_PB[settlement.state],
        attempts=settlement.attempts,
        last_error=settlement.last_error,
        charge_id=settlement.charge_id or "",
        amount_cents=settlement.amount_cents,
        currency=settlement.currency,
        updated_at=timestamp_pb(settlement.updated_at),
        trace_id=tracing.trace_id_of(settlement.trace_parent),
    )
    if settlement.state in (SettlementState.AWAITING_PAYMENT, SettlementState.REFUNDING):
        message.next_attempt_at.CopyFrom(timestamp_pb(settlement.next_attempt_at))
    return message


def state_pb(state: BookingState) -> pb.BookingState.ValueType:
    return _STATE_TO_PB[state]


def payment_state_pb(state: SettlementState) -> pb.PaymentState.ValueType:
    return _PAYMENT_TO_PB[state]


def booking_pb(booking: Booking, settlement: Settlement | None = None, steps: Sequence[Step] = ()) -> pb.Booking:
    message = pb.Booking(
        booking_id=booking.booking_id,
        basecamp_id=booking.basecamp_id,
        resource_id=booking.resource_id,
        nights=nights_pb(booking.nights),
        party_size=booking.party_size,
        customer_id=booking.customer_id,
        state=_STATE_TO_PB[booking.state],
        created_at=timestamp_pb(booking.created_at),
        updated_at=timestamp_pb(booking.updated_at),
        total_price_cents=booking.total_price_cents,
        currency=booking.currency,
        created_by=booking.created_by,
        workflow=booking.workflow,
        steps=[pb.WorkflowStep(step=s.step, at=timestamp_pb(s.at), amount_cents=s.amount_cents, detail=s.detail, actor=s.actor) for s in steps],
        history=[
            pb.BookingTransition(
                version=t.version,
                from_state=_STATE_TO_PB[t.from_state] if t.from_state else pb.BOOKING_STATE_UNSPECIFIED,
                to_state=_STATE_TO_PB[t.to_state],
                at=timestamp_pb(t.at),
                reason=t.reason,
                actor=t.actor,
            )
            for t in booking.history
        ],
    )
    if booking.state is BookingState.HELD:
        message.expires_at.CopyFrom(timestamp_pb(booking.expires_at))
    if settlement is not None:
        message.payment.CopyFrom(payment_pb(settlement))
    return message


def leg_pb(leg: Leg) -> tpb.TrekLegReply:
    reply = tpb.TrekLegReply(trek_id=leg.key.trek_id, leg_index=leg.key.leg_index, state=_LEG_STATE_TO_PB[leg.state])
    if leg.booking is not None:
        reply.booking.CopyFrom(booking_pb(leg.booking))
    return reply
