"""Checks every OperatorService request at the edge and turns it into the operator domain's terms.

The field checks are :mod:`.validation`'s (ids, keys, reasons, filters), so an operator
call is refused with the same words as a desk call; what is new here is the action enum,
the wait bound, the bulk limit and the in-flight query.
"""

from __future__ import annotations

from dataclasses import dataclass

from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.booking.queries import BookingFilter
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge import validation
from ridgeline.regional.errors import InvalidRequest
from ridgeline.regional.operator import actions, in_flight, records
from ridgeline.regional.operator.model import Action
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

ACTION_FROM_PB = {
    opb.OPERATOR_ACTION_RETRY_SETTLEMENT: Action.RETRY_SETTLEMENT,
    opb.OPERATOR_ACTION_RELEASE_HOLD: Action.RELEASE_HOLD,
    opb.OPERATOR_ACTION_REFUND_CHARGE: Action.REFUND_CHARGE,
}
_KIND_FROM_PB = {
    opb.IN_FLIGHT_KIND_STUCK: in_flight.Kind.STUCK,
    opb.IN_FLIGHT_KIND_WAITING_ON_TIMER: in_flight.Kind.WAITING_ON_TIMER,
    opb.IN_FLIGHT_KIND_LEG_IN_DOUBT: in_flight.Kind.LEG_IN_DOUBT,
}


@dataclass(frozen=True)
class BookingAction:
    booking_id: str
    key: str
    reason: str
    wait_seconds: float


@dataclass(frozen=True)
class Bulk:
    action: Action
    key: str
    where: BookingFilter
    reason: str
    limit: int
    wait_seconds: float


def booking_action(request: opb.BookingActionRequest) -> BookingAction:
    return BookingAction(
        booking_id=validation.booking_id(request.booking_id),
        key=validation.idempotency_key(request.idempotency_key),
        reason=validation.reason(request.reason),
        wait_seconds=wait_seconds(request.wait_seconds),
    )


def wait_seconds(value: int) -> float:
    if not 0 <= value <= actions.WAIT_MAX_SECONDS:
        raise InvalidRequest(f"wait_seconds must be between 0 and {actions.WAIT_MAX_SECONDS:.0f}; got {value}")
    return float(value) if value else actions.WAIT_DEFAULT_SECONDS


def bulk(request: opb.BulkActionRequest, catalog: CatalogView, config: NodeConfig) -> Bulk:
    if request.action not in ACTION_FROM_PB:
        raise InvalidRequest("action must be RETRY_SETTLEMENT, RELEASE_HOLD or REFUND_CHARGE")
    f = request.filter
    if not (f.basecamp_id or f.state or f.stuck_seconds or f.workflow):
        raise InvalidRequest("filter must set at least one of basecamp_id, state, stuck_seconds or workflow: a bulk action never takes the whole region")
    # The filter's fields are ListBookings' own, checked the same way.
    listing = pb.ListBookingsRequest(basecamp_id=f.basecamp_id, state=f.state, stuck_seconds=f.stuck_seconds, workflow=f.workflow)
    where, _, _ = validation.booking_filter(listing, catalog, config)
    if not 0 <= request.limit <= actions.BULK_MAX:
        raise InvalidRequest(f"limit must be between 0 and {actions.BULK_MAX}; got {request.limit}")
    return Bulk(
        action=ACTION_FROM_PB[request.action],
        key=validation.idempotency_key(request.idempotency_key),
        where=where,
        reason=validation.reason(request.reason),
        limit=request.limit or in_flight.PAGE_SIZE_DEFAULT,
        wait_seconds=wait_seconds(request.wait_seconds),
    )


def in_flight_query(request: opb.ListInFlightRequest, catalog: CatalogView, reach: frozenset[str] | None) -> tuple[in_flight.Query, str]:
    if request.kind not in _KIND_FROM_PB:
        raise InvalidRequest("kind must be STUCK, WAITING_ON_TIMER or LEG_IN_DOUBT")
    if not 0 <= request.older_than_seconds <= validation.STUCK_SECONDS_MAX:
        raise InvalidRequest(f"older_than_seconds must be between 0 and {validation.STUCK_SECONDS_MAX}; got {request.older_than_seconds}")
    query = in_flight.Query(
        kind=_KIND_FROM_PB[request.kind],
        older_than_seconds=request.older_than_seconds,
        basecamp_id=validation.basecamp(catalog, request.basecamp_id).basecamp_id if request.basecamp_id else None,
        workflow=validation.workflow_version(request.workflow, "workflow") if request.workflow else None,
        reach=reach,
        page_size=page_size(request.page_size, in_flight.PAGE_SIZE_MAX),
    )
    return query, page_token(request.page_token)


def actions_page(request: opb.ListActionsRequest) -> tuple[str | None, int, str]:
    booking_id = validation.booking_id(request.booking_id) if request.booking_id else None
    return booking_id, page_size(request.page_size, records.PAGE_SIZE_MAX), page_token(request.page_token)


def page_size(value: int, size_max: int) -> int:
    if not 0 <= value <= size_max:
        raise InvalidRequest(f"page_size must be between 0 and {size_max}; got {value}")
    return value or in_flight.PAGE_SIZE_DEFAULT


#: An in-flight token carries a three-part key (a trek leg's: deadline, trek id, leg).
PAGE_TOKEN_LENGTH_MAX = 512


def page_token(value: str) -> str:
    if len(value) > PAGE_TOKEN_LENGTH_MAX or not value.isprintable():
        raise InvalidRequest("page_token is not a token this server issued")
    return value
