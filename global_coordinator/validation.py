"""The coordinator's gRPC edge: a PlanTrek is checked before anything is recorded.

Only what the coordinator can judge is checked here (shape, sizes, which region serves
each basecamp); whether a resource exists and its nights are on sale is the
participant's to say, and a leg it refuses aborts the trek with its reason.
"""

from __future__ import annotations

import uuid
from datetime import date

from ridgeline.global_coordinator.decision_log import LegPlan, TrekState
from ridgeline.global_coordinator.errors import InvalidTrek, TrekNotFound
from ridgeline.global_coordinator.participants import Participants
from ridgeline.global_coordinator.protocol import TrekRequest
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

LEGS_MAX = 12
LEG_NIGHTS_MAX = 30
PARTY_MAX = 1000
TEXT_LENGTH_MAX = 128
PAGE_SIZE_MAX = 500
PAGE_SIZE_DEFAULT = 100

STATE_FROM_PB = {
    tpb.TREK_STATE_PREPARING: TrekState.PREPARING,
    tpb.TREK_STATE_COMMITTING: TrekState.COMMITTING,
    tpb.TREK_STATE_COMMITTED: TrekState.COMMITTED,
    tpb.TREK_STATE_ABORTING: TrekState.ABORTING,
    tpb.TREK_STATE_ABORTED: TrekState.ABORTED,
    tpb.TREK_STATE_CANCELLING: TrekState.CANCELLING,
    tpb.TREK_STATE_CANCELLED: TrekState.CANCELLED,
}


def text(value: str, field: str, *, required: bool = True) -> str:
    if required and not value:
        raise InvalidTrek(f"{field} is required")
    if len(value) > TEXT_LENGTH_MAX or not value.isprintable():
        raise InvalidTrek(f"{field} must be at most {TEXT_LENGTH_MAX} printable characters")
    return value


def trek_request(request: tpb.PlanTrekRequest, participants: Participants) -> TrekRequest:
    key = text(request.idempotency_key, "idempotency_key")
    customer = text(request.customer_id, "customer_id")
    if not 1 <= len(request.legs) <= LEGS_MAX:
        raise InvalidTrek(f"a trek has 1 to {LEGS_MAX} legs; got {len(request.legs)}")
    return TrekRequest(key, customer, tuple(_leg(leg, i, participants) for i, leg in enumerate(request.legs)))


def _leg(leg: tpb.TrekLeg, index: int, participants: Participants) -> LegPlan:
    where = f"legs[{index}]"
    basecamp = text(leg.basecamp_id, f"{where}.basecamp_id")
    resource = text(leg.resource_id, f"{where}.resource_id")
    start, end = _date(leg.nights.start, f"{where}.nights.start"), _date(leg.nights.end, f"{where}.nights.end")
    if not 0 < (end - start).days <= LEG_NIGHTS_MAX:
        raise InvalidTrek(f"{where}.nights must span 1 to {LEG_NIGHTS_MAX} nights; got {start} to {end}")
    if not 1 <= leg.party_size <= PARTY_MAX:
        raise InvalidTrek(f"{where}.party_size must be between 1 and {PARTY_MAX}; got {leg.party_size}")
    region = participants.region_of(basecamp)
    if region is None:
        raise TrekNotFound(f"{where}: no region serves basecamp {basecamp!r}")
    return LegPlan(region, basecamp, resource, start, end, leg.party_size)


def _date(value: pb.Date, field: str) -> date:
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise InvalidTrek(f"{field} is not a date: {value.year:04d}-{value.month:02d}-{value.day:02d}") from None


def trek_id(value: str) -> str:
    text(value, "trek_id")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidTrek(f"trek_id {value!r} is not a trek id (a UUID)") from None


def list_filter(request: tpb.ListTreksRequest) -> tuple[TrekState | None, int, int]:
    state = None
    if request.state != tpb.TREK_STATE_UNSPECIFIED:
        if request.state not in STATE_FROM_PB:
            raise InvalidTrek(f"state {request.state} is not a trek state")
        state = STATE_FROM_PB[request.state]
    if request.stuck_after_seconds < 0:
        raise InvalidTrek("stuck_after_seconds must not be negative")
    if not 0 <= request.page_size <= PAGE_SIZE_MAX:
        raise InvalidTrek(f"page_size must be between 0 and {PAGE_SIZE_MAX}")
    return state, request.stuck_after_seconds, request.page_size or PAGE_SIZE_DEFAULT
