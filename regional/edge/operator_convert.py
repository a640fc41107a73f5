"""Operator domain values to their ``ridgeline.v1`` OperatorService messages; no logic beyond the mapping."""

from __future__ import annotations

import grpc

from ridgeline.regional import errors
from ridgeline.regional.edge import convert
from ridgeline.regional.edge.status_codes import code_for
from ridgeline.regional.operator import in_flight, timeline
from ridgeline.regional.operator.model import Action, ActionRecord, Outcome, Result
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

_ACTION_TO_PB = {
    Action.RETRY_SETTLEMENT: opb.OPERATOR_ACTION_RETRY_SETTLEMENT,
    Action.RELEASE_HOLD: opb.OPERATOR_ACTION_RELEASE_HOLD,
    Action.REFUND_CHARGE: opb.OPERATOR_ACTION_REFUND_CHARGE,
}
_RESULT_TO_PB = {
    Result.APPLIED: opb.ACTION_RESULT_APPLIED,
    Result.STILL_PENDING: opb.ACTION_RESULT_STILL_PENDING,
    Result.ALREADY_DONE: opb.ACTION_RESULT_ALREADY_DONE,
    Result.REFUSED: opb.ACTION_RESULT_REFUSED,
}
_KIND_TO_PB = {
    in_flight.Kind.STUCK: opb.IN_FLIGHT_KIND_STUCK,
    in_flight.Kind.WAITING_ON_TIMER: opb.IN_FLIGHT_KIND_WAITING_ON_TIMER,
    in_flight.Kind.LEG_IN_DOUBT: opb.IN_FLIGHT_KIND_LEG_IN_DOUBT,
}
_ENTRY_TO_PB = {
    timeline.Kind.TRANSITION: opb.TIMELINE_KIND_TRANSITION,
    timeline.Kind.SETTLEMENT: opb.TIMELINE_KIND_SETTLEMENT,
    timeline.Kind.CHARGE: opb.TIMELINE_KIND_CHARGE,
    timeline.Kind.REFUND: opb.TIMELINE_KIND_REFUND,
    timeline.Kind.WORKFLOW_STEP: opb.TIMELINE_KIND_WORKFLOW_STEP,
    timeline.Kind.TIMER: opb.TIMELINE_KIND_TIMER,
    timeline.Kind.OPERATOR_ACTION: opb.TIMELINE_KIND_OPERATOR_ACTION,
    timeline.Kind.TREK_LEG: opb.TIMELINE_KIND_TREK_LEG,
}


def record_pb(record: ActionRecord) -> opb.ActionOutcome:
    message = opb.ActionOutcome(
        action_id=record.action_id,
        action=_ACTION_TO_PB[record.action],
        booking_id=record.booking_id,
        detail=record.detail,
        actor=record.actor,
        at=convert.timestamp_pb(record.finished_at or record.requested_at),
    )
    if record.result is not None:
        message.result = _RESULT_TO_PB[record.result]
    return message


def outcome_pb(outcome: Outcome) -> opb.ActionOutcome:
    message = record_pb(outcome.record)
    message.booking.CopyFrom(convert.booking_pb(outcome.booking, outcome.settlement, outcome.steps))
    return message


def failure_pb(action: Action, booking_id: str, error: errors.BookingError) -> opb.ActionOutcome:
    """A bulk action's answer for a booking whose call failed (not the owner, contention …)."""
    code = code_for(error)
    if isinstance(error, errors.NotOwner) and error.has_owner:
        code = grpc.StatusCode.FAILED_PRECONDITION
    return opb.ActionOutcome(
        action=_ACTION_TO_PB[action], booking_id=booking_id, result=opb.ACTION_RESULT_FAILED, detail=str(error), error_code=code.name
    )


def item_pb(item: in_flight.Item) -> opb.InFlightItem:
    message = opb.InFlightItem(
        kind=_KIND_TO_PB[item.kind],
        booking_id=item.booking_id,
        basecamp_id=item.basecamp_id,
        resource_id=item.resource_id,
        customer_id=item.customer_id,
        state=convert.state_pb(item.state),
        workflow=item.workflow,
        created_at=convert.timestamp_pb(item.created_at),
        updated_at=convert.timestamp_pb(item.updated_at),
        payment_state=convert.payment_state_pb(item.payment_state) if item.payment_state else pb.PAYMENT_STATE_UNSPECIFIED,
        attempts=item.attempts,
        last_error=item.last_error,
        timer_step=item.timer_step,
        trek_id=item.trek_id,
        leg_index=item.leg_index,
    )
    if item.next_at is not None:
        message.next_at.CopyFrom(convert.timestamp_pb(item.next_at))
    return message


def timeline_pb(found: timeline.Timeline) -> opb.BookingTimeline:
    entries = []
    for e in found.entries:
        entry = opb.TimelineEntry(
            kind=_ENTRY_TO_PB[e.kind], at=convert.timestamp_pb(e.at), actor=e.actor, detail=e.detail, amount_cents=e.amount_cents, reference=e.reference
        )
        if e.from_state is not None:
            entry.from_state = convert.state_pb(e.from_state)
        if e.to_state is not None:
            entry.to_state = convert.state_pb(e.to_state)
        entries.append(entry)
    booking = convert.booking_pb(found.booking, found.settlement, found.steps)
    return opb.BookingTimeline(booking=booking, entries=entries, trace_id=found.trace_id)
