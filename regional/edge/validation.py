"""Checks every request at the gRPC edge and turns it into a domain request.

Nothing malformed reaches the database: each check raises :class:`InvalidRequest` (or
:class:`NotFound` for ids the region does not know) with a message that names the
field, so a desk can fix the call without reading server logs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ridgeline.regional.booking.catalog import Basecamp, CatalogView, Resource
from ridgeline.regional.booking.holds import HoldRequest
from ridgeline.regional.booking.model import BookingState, Nights
from ridgeline.regional.booking.queries import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, BookingFilter
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge.convert import STATE_FROM_PB
from ridgeline.regional.errors import InvalidRequest, NotFound
from ridgeline.v1 import booking_pb2 as pb

ID_LENGTH_MAX = 64
KEY_LENGTH_MAX = 128
CUSTOMER_LENGTH_MAX = 128
REASON_LENGTH_MAX = 500
PAGE_TOKEN_LENGTH_MAX = 256
#: The "stuck" filter looks back at most this far (a booking's stay is within a year).
STUCK_SECONDS_MAX = 400 * 24 * 3600


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


def hold_request(request: pb.PlaceHoldRequest | pb.BookRequest, catalog: CatalogView, config: NodeConfig, now: datetime) -> HoldRequest:
    key = idempotency_key(request.idempotency_key)
    camp = basecamp(catalog, request.basecamp_id)
    unit = resource(catalog, camp, request.resource_id)
    stay = bookable_nights(request.nights, camp, config, now)
    if request.party_size <= 0:
        raise InvalidRequest(f"party_size must be at least 1; got {request.party_size}")
    if request.party_size > unit.capacity:
        raise InvalidRequest(f"party_size {request.party_size} exceeds the capacity {unit.capacity} of {unit.resource_id}")
    customer = _text(request.customer_id, "customer_id", length_max=CUSTOMER_LENGTH_MAX)
    ttl = request.hold_ttl_seconds or config.hold_ttl_default_seconds
    if not config.hold_ttl_min_seconds <= ttl <= config.hold_ttl_max_seconds:
        raise InvalidRequest(
            f"hold_ttl_seconds must be between {config.hold_ttl_min_seconds} and {config.hold_ttl_max_seconds}; got {ttl}"
        )
    return HoldRequest(
        idempotency_key=key,
        basecamp_id=camp.basecamp_id,
        resource_id=unit.resource_id,
        nights=stay,
        party_size=request.party_size,
        customer_id=customer,
        ttl_seconds=ttl,
        unit_price_cents=unit.unit_price_cents,
        currency=unit.currency,
        settle=isinstance(request, pb.BookRequest),
    )


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
    where = BookingFilter(basecamp_id=camp_id, state=state, nights=span, stuck_seconds=request.stuck_seconds)
    return where, request.page_size or PAGE_SIZE_DEFAULT, token
