"""Checks every request at the gRPC edge and turns it into a domain request.

Nothing malformed reaches the database: each check raises :class:`InvalidRequest` (or
:class:`NotFound` for ids the region does not know) with a message that names the
field, so a desk can fix the call without reading server logs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.catalog import Basecamp, CatalogView, Resource
from ridgeline.regional.booking.holds import HoldRequest
from ridgeline.regional.booking.model import BookingState, Nights
from ridgeline.regional.booking.queries import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, BookingFilter
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge.convert import STATE_FROM_PB
from ridgeline.regional.errors import ForeignCoordinator, InvalidRequest, NotFound, PermissionDenied
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.workflows import versions
from ridgeline.trust.identity import node_actor
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

ID_LENGTH_MAX = 64
KEY_LENGTH_MAX = 128
CUSTOMER_LENGTH_MAX = 128
REASON_LENGTH_MAX = 500
PAGE_TOKEN_LENGTH_MAX = 256
#: The "stuck" filter looks back at most this far (a booking's stay is within a year).
STUCK_SECONDS_MAX = 400 * 24 * 3600
#: A leg's hold lasts at least this long (the coordinator's prepare deadline fits in it)
#: and at most a day: past that, a planner is better served by a fresh trek.
LEG_TTL_MIN_SECONDS = 10
LEG_TTL_MAX_SECONDS = 24 * 3600
LEG_INDEX_MAX = 63
TARGET_LENGTH_MAX = 255


def _text(value: str, field: str, *, length_max: int, required: bool = True) -> str:
    if required and not value:
        raise InvalidRequest(f"{field} is required")
    if len(value) > length_max:
        raise InvalidRequest(f"{field} is {len(value)} characters long; at most {length_max} are allowed")
    if not value.isprintable():
        raise InvalidRequest(f"{field} contains control characters")
    return value


def idempotency_key(value: str) -> str:
    return _text(value, "idempotency_key", length_max=KEY_LENGTH_MAX)


def booking_id(value: str) -> str:
    _text(value, "booking_id", length_max=ID_LENGTH_MAX)
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise InvalidRequest(f"booking_id {value!r} is not a booking id (a UUID)") from error


def reason(value: str) -> str:
    return _text(value, "reason", length_max=REASON_LENGTH_MAX, required=False)


def _date(message: pb.Date, field: str) -> date:
    if message.year == 0 and message.month == 0 and message.day == 0:
        raise InvalidRequest(f"{field} is required")
    try:
        return date(message.year, message.month, message.day)
    except ValueError as error:
        raise InvalidRequest(f"{field} {message.year:04d}-{message.month:02d}-{message.day:02d} is not a date") from error


def nights(message: pb.NightRange, *, stay_nights_max: int) -> Nights:
    """A well-formed, forward range of at most ``stay_nights_max`` nights."""
    start = _date(message.start, "nights.start")
    end = _date(message.end, "nights.end")
    if end <= start:
        raise InvalidRequest(f"nights.end {end.isoformat()} must be after nights.start {start.isoformat()}")
    result = Nights(start, end)
    if result.count > stay_nights_max:
        raise InvalidRequest(f"a stay covers at most {stay_nights_max} nights; {result.count} were asked")
    return result


def bookable_nights(message: pb.NightRange, basecamp: Basecamp, config: NodeConfig, now: datetime) -> Nights:
    """Nights that are on sale: from the basecamp's today up to the booking horizon."""
    result = nights(message, stay_nights_max=config.stay_nights_max)
    today = basecamp.today(now)
    if result.start < today:
        raise InvalidRequest(f"nights.start {result.start.isoformat()} is in the past at {basecamp.basecamp_id} (today is {today.isoformat()})")
    horizon = today + timedelta(days=config.advance_booking_days)
    if result.end > horizon:
        raise InvalidRequest(f"nights end after the booking horizon {horizon.isoformat()} ({config.advance_booking_days} days ahead)")
    return result


def basecamp(catalog: CatalogView, basecamp_id: str) -> Basecamp:
    _text(basecamp_id, "basecamp_id", length_max=ID_LENGTH_MAX)
    found = catalog.basecamp(basecamp_id)
    if found is None:
        raise NotFound(f"basecamp {basecamp_id!r} is not served by region {catalog.region}")
    return found


def resource(catalog: CatalogView, camp: Basecamp, resource_id: str) -> Resource:
    _text(resource_id, "resource_id", length_max=ID_LENGTH_MAX)
    found = catalog.resource(resource_id)
    if found is None or found.basecamp_id != camp.basecamp_id:
        raise NotFound(f"basecamp {camp.basecamp_id!r} has no resource {resource_id!r}")
    return found


@dataclass(frozen=True)
class _Stay:
    """What a hold and a trek leg both ask for, checked against the catalog."""

    resource: Resource
    nights: Nights
    party_size: int
    customer_id: str

    def hold(self, key: str, ttl_seconds: int, *, settle: bool, actor: str, node_id: str, workflow: str = versions.HOLD_V1) -> HoldRequest:
        """The hold of this stay, placed by ``actor`` on node ``node_id``; prices come from the catalog, not from the caller."""
        return HoldRequest(
            idempotency_key=key,
            basecamp_id=self.resource.basecamp_id,
            resource_id=self.resource.resource_id,
            nights=self.nights,
            party_size=self.party_size,
            customer_id=self.customer_id,
            ttl_seconds=ttl_seconds,
            unit_price_cents=self.resource.unit_price_cents,
            currency=self.resource.currency,
            actor=actor,
            node_actor=node_actor(node_id),
            settle=settle,
            workflow=workflow,
        )


#: The messages that ask for a stay: each has basecamp_id, resource_id, nights and party_size.
_StayMessage = pb.PlaceHoldRequest | pb.BookRequest | tpb.TrekLeg


def _stay(asked: _StayMessage, customer_id: str, catalog: CatalogView, config: NodeConfig, now: datetime) -> _Stay:
    camp = basecamp(catalog, asked.basecamp_id)
    unit = resource(catalog, camp, asked.resource_id)
    stay = bookable_nights(asked.nights, camp, config, now)
    if asked.party_size <= 0:
        raise InvalidRequest(f"party_size must be at least 1; got {asked.party_size}")
    if asked.party_size > unit.capacity:
        raise InvalidRequest(f"party_size {asked.party_size} exceeds the capacity {unit.capacity} of {unit.resource_id}")
    customer = _text(customer_id, "customer_id", length_max=CUSTOMER_LENGTH_MAX)
    return _Stay(unit, stay, asked.party_size, customer)


def _hold_ttl_seconds(value: int, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidRequest(f"hold_ttl_seconds must be between {low} and {high}; got {value}")
    return value


def hold_request(
    request: pb.PlaceHoldRequest | pb.BookRequest, catalog: CatalogView, config: NodeConfig, now: datetime, caller: Caller
) -> HoldRequest:
    """The hold ``caller`` asks for, under its own key; PermissionDenied outside its scope
    (a scoped desk or agency at a basecamp it does not serve), before anything is written."""
    key = idempotency_key(request.idempotency_key)
    stay = _stay(request, request.customer_id, catalog, config, now)
    basecamp_id = stay.resource.basecamp_id
    if not caller.may_book(basecamp_id):
        raise PermissionDenied(f"{caller.actor} may not book at {basecamp_id}: its scope is {', '.join(sorted(caller.basecamps or ()))}")
    ttl = _hold_ttl_seconds(
        request.hold_ttl_seconds or config.hold_ttl_default_seconds, low=config.hold_ttl_min_seconds, high=config.hold_ttl_max_seconds
    )
    return stay.hold(caller.own_key(key), ttl, settle=isinstance(request, pb.BookRequest), actor=caller.actor, node_id=config.node_id)


def leg_key(request: tpb.PrepareLegRequest | tpb.LegRef) -> legs.LegKey:
    """The (trek, leg) a coordinator's call is about; a trek id is the coordinator's UUID,
    as the coordinator itself checks it, so no fence is ever written for an id it cannot read."""
    _text(request.trek_id, "trek_id", length_max=ID_LENGTH_MAX)
    try:
        trek_id = str(uuid.UUID(request.trek_id))
    except ValueError as error:
        raise InvalidRequest(f"trek_id {request.trek_id!r} is not a trek id (a UUID)") from error
    if not 0 <= request.leg_index <= LEG_INDEX_MAX:
        raise InvalidRequest(f"leg_index must be between 0 and {LEG_INDEX_MAX}; got {request.leg_index}")
    return legs.LegKey(trek_id, request.leg_index)


@dataclass(frozen=True)
class LegPrepare:
    """A validated PrepareLeg: the leg, the hold it places, and whom to ask when in doubt."""

    key: legs.LegKey
    hold: HoldRequest
    coordinator_target: str


def leg_prepare(request: tpb.PrepareLegRequest, catalog: CatalogView, config: NodeConfig, now: datetime, actor: str) -> LegPrepare:
    """The leg's stay is checked like a hold's; its key and TTL come from the trek, and
    ``actor`` (the coordinator's node identity) places its hold."""
    key = leg_key(request)
    ttl = _hold_ttl_seconds(request.hold_ttl_seconds, low=LEG_TTL_MIN_SECONDS, high=LEG_TTL_MAX_SECONDS)
    stay = _stay(request.leg, request.customer_id, catalog, config, now)
    target = request.coordinator_target
    if not target or len(target) > TARGET_LENGTH_MAX or not target.isprintable() or ":" not in target:
        raise InvalidRequest(f"coordinator_target must be host:port (at most {TARGET_LENGTH_MAX} characters)")
    if target not in config.coordinator_targets:
        known = ", ".join(config.coordinator_targets) or "none"
        raise ForeignCoordinator(f"coordinator_target {target} is not a coordinator of this cluster (known: {known}); the leg is not prepared")
    return LegPrepare(key, stay.hold(legs.hold_key(key), ttl, settle=False, actor=actor, node_id=config.node_id, workflow=versions.TREK_V1), target)


@dataclass(frozen=True)
class AvailabilityQuery:
    basecamp: Basecamp
    resources: tuple[Resource, ...]
    nights: Nights


def availability_query(request: pb.GetAvailabilityRequest, catalog: CatalogView, config: NodeConfig) -> AvailabilityQuery:
    camp = basecamp(catalog, request.basecamp_id)
    units = (resource(catalog, camp, request.resource_id),) if request.resource_id else camp.resources
    # Past nights may be looked at (a desk checks what happened); only the span is bounded.
    span_max = config.advance_booking_days + 1
    return AvailabilityQuery(camp, tuple(units), nights(request.nights, stay_nights_max=span_max))


def booking_filter(request: pb.ListBookingsRequest, catalog: CatalogView, config: NodeConfig) -> tuple[BookingFilter, int, str]:
    camp_id = None
    if request.basecamp_id:
        camp_id = basecamp(catalog, request.basecamp_id).basecamp_id
    state: BookingState | None = None
    if request.state != pb.BOOKING_STATE_UNSPECIFIED:
        if request.state not in STATE_FROM_PB:
            raise InvalidRequest(f"state {request.state} is not a booking state")
        state = STATE_FROM_PB[request.state]
    span = None
    if request.HasField("nights"):
        span = nights(request.nights, stay_nights_max=config.advance_booking_days + 1)
    if not 0 <= request.page_size <= PAGE_SIZE_MAX:
        raise InvalidRequest(f"page_size must be between 0 and {PAGE_SIZE_MAX}; got {request.page_size}")
    token = _text(request.page_token, "page_token", length_max=PAGE_TOKEN_LENGTH_MAX, required=False)
    if not 0 <= request.stuck_seconds <= STUCK_SECONDS_MAX:
        raise InvalidRequest(f"stuck_seconds must be between 0 and {STUCK_SECONDS_MAX}; got {request.stuck_seconds}")
    workflow = None
    if request.workflow:
        workflow = workflow_version(request.workflow, "workflow")
    customer = _text(request.customer_id, "customer_id", length_max=CUSTOMER_LENGTH_MAX, required=False) or None
    where = BookingFilter(basecamp_id=camp_id, state=state, nights=span, stuck_seconds=request.stuck_seconds, workflow=workflow, customer_id=customer)
    return where, request.page_size or PAGE_SIZE_DEFAULT, token


def workflow_version(text: str, field: str) -> str:
    """A workflow version this code knows (``settle@2``), named by ``field``."""
    try:
        versions.parse(text)
    except ValueError as error:
        raise InvalidRequest(f"{field}: {error}") from None
    if text not in versions.KNOWN:
        raise NotFound(f"{field}: no workflow version {text!r} (known: {', '.join(versions.KNOWN)})")
    return text
