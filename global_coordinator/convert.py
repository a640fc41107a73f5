"""Decision-log records to TrekService messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ridgeline.global_coordinator.decision_log import Decision, LegRecord, LegState, TrekRecord, TrekState
from ridgeline.global_coordinator.validation import STATE_FROM_PB
from ridgeline.routing import night_range
from ridgeline.v1 import trek_pb2 as tpb

_TREK_STATE_PB = {state: number for number, state in STATE_FROM_PB.items()}
_LEG_STATE_PB = {state: tpb.LegState.Value(f"LEG_STATE_{state.name}") for state in LegState}
DECISION_PB = {Decision.COMMIT: tpb.DECISION_COMMIT, Decision.ABORT: tpb.DECISION_ABORT, None: tpb.DECISION_PENDING}


def trek_pb(trek: TrekRecord) -> tpb.Trek:
    return tpb.Trek(
        trek_id=trek.trek_id,
        customer_id=trek.customer_id,
        state=_TREK_STATE_PB[trek.state],
        decision=DECISION_PB[trek.decision],
        reason=trek.reason,
        legs=[_leg_pb(leg) for leg in trek.legs],
        charges=[tpb.TrekCharge(currency=c.currency, amount_cents=c.amount_cents, charge_id=c.charge_id, refunded_cents=c.refunded_cents) for c in trek.charges],
        created_at=timestamp_pb(trek.created_at),
        decided_at=timestamp_pb(trek.decided_at),
        settled_at=timestamp_pb(trek.settled_at),
        updated_at=timestamp_pb(trek.updated_at),
        planned_by=trek.planned_by,
        decided_by=trek.decided_by or "",
        cancelled_by=trek.cancelled_by or "",
    )


def decision_pb(trek_id: str, decision: Decision | None, state: TrekState | None) -> tpb.GetDecisionResponse:
    """GetDecision's answer; no state (UNSPECIFIED) for a trek the log never recorded."""
    return tpb.GetDecisionResponse(
        trek_id=trek_id, decision=DECISION_PB[decision], state=tpb.TREK_STATE_UNSPECIFIED if state is None else _TREK_STATE_PB[state]
    )


def _leg_pb(leg: LegRecord) -> tpb.TrekLegStatus:
    plan = leg.plan
    return tpb.TrekLegStatus(
        leg_index=leg.index,
        region=plan.region,
        leg=tpb.TrekLeg(basecamp_id=plan.basecamp_id, resource_id=plan.resource_id, nights=night_range(plan.first_night, plan.end_night), party_size=plan.party_size),
        state=_LEG_STATE_PB[leg.state],
        booking_id=leg.booking_id or "",
        price_cents=leg.price_cents,
        currency=leg.currency,
        detail=leg.detail,
    )


def timestamp_pb(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
