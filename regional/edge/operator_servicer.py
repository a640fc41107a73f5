"""OperatorService: each method unpacks the request, calls the operator domain, packs the reply.

Who may call is the authorization table's (``trust.policy``: the sre role, and desks for
their own basecamps); the caller's reach (a scoped desk's basecamps) is checked by the
domain before anything is written and refused PERMISSION_DENIED, for single and bulk
actions alike. Reads (in flight, timeline, actions) show a scoped desk only its
basecamps; a booking outside them is NOT_FOUND, as GetBooking answers it.

Actions run on any node of the region; a release is a fenced move, so it takes effect
only at the basecamp's owner (elsewhere FAILED_PRECONDITION with the owner, which the
routing client follows). Retries and refunds make a settlement step due, which the
owner's settlement loop takes: the answer waits for that step, then re-reads.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from datetime import datetime

import grpc
from sqlalchemy import Connection, Engine

from ridgeline.regional.booking.access import Caller, caller_of
from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.edge import operator_convert as oconvert
from ridgeline.regional.edge import operator_validation as ovalidation
from ridgeline.regional.edge import validation
from ridgeline.regional.edge.booking_servicer import deadline_of
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.errors import InvalidRequest, NotFound, PermissionDenied
from ridgeline.regional.operator import actions, in_flight, records, timeline
from ridgeline.regional.operator.model import Action
from ridgeline.regional.storage.db import read_transaction
from ridgeline.routing.clock import Clock, utc_now
from ridgeline.routing.keeper import Ownership
from ridgeline.trust import identity
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc

#: Without a caller's deadline, an action answers within its wait and this much more.
_NO_DEADLINE_MARGIN_SECONDS = 30.0
#: The answer leaves the wait this long before the caller's deadline, so it arrives in time.
_ANSWER_MARGIN_SECONDS = 0.5


class OperatorServicer(opb_grpc.OperatorServiceServicer):
    def __init__(self, config: NodeConfig, engine: Engine, catalog: CatalogView, owned: Ownership, clock: Clock = utc_now) -> None:
        self._config = config
        self._engine = engine
        self._catalog = catalog
        self._operator = actions.Operator(engine, owned.fence, clock, config.operator_refund_grace_seconds)
        self._clock = clock

    @guarded
    def RetrySettlement(self, request: opb.BookingActionRequest, context: grpc.ServicerContext) -> opb.ActionOutcome:
        return self._act(Action.RETRY_SETTLEMENT, request, context)

    @guarded
    def ReleaseHold(self, request: opb.BookingActionRequest, context: grpc.ServicerContext) -> opb.ActionOutcome:
        return self._act(Action.RELEASE_HOLD, request, context)

    @guarded
    def RefundCharge(self, request: opb.BookingActionRequest, context: grpc.ServicerContext) -> opb.ActionOutcome:
        return self._act(Action.REFUND_CHARGE, request, context)

    @guarded
    def BulkAction(self, request: opb.BulkActionRequest, context: grpc.ServicerContext) -> opb.BulkActionResponse:
        bulk, caller = ovalidation.bulk(request, self._catalog, self._config), self._caller()
        if bulk.where.basecamp_id and not caller.reaches(basecamp_id=bulk.where.basecamp_id, created_by=caller.actor):
            raise PermissionDenied(f"{caller.actor} may not act on bookings of {bulk.where.basecamp_id}: outside its scope")
        booking_ids, truncated = actions.selected(self._operator, bulk.where, caller, limit=bulk.limit)
        asked = [actions.Request(bulk.action, b, caller.own_key(f"{bulk.key}/{b}"), bulk.reason) for b in booking_ids]
        deadline = self._deadline(context, bulk.wait_seconds)
        answers = actions.run(self._operator, caller, asked, wait_seconds=bulk.wait_seconds, deadline=deadline)
        outcomes = [
            oconvert.outcome_pb(answer) if not isinstance(answer, Exception) else oconvert.failure_pb(bulk.action, booking_id, answer)
            for booking_id, answer in zip(booking_ids, answers)
        ]
        return opb.BulkActionResponse(outcomes=outcomes, truncated=truncated)

    @guarded
    def ListInFlight(self, request: opb.ListInFlightRequest, context: grpc.ServicerContext) -> opb.ListInFlightResponse:
        caller = self._caller()
        query, token = ovalidation.in_flight_query(request, self._catalog, caller.basecamps)
        now = self._clock()
        items, next_token = read_transaction(self._engine, lambda conn: in_flight.page(conn, query, token=token, now=now))
        return opb.ListInFlightResponse(items=[oconvert.item_pb(i) for i in items], next_page_token=next_token)

    @guarded
    def GetTimeline(self, request: opb.GetTimelineRequest, context: grpc.ServicerContext) -> opb.BookingTimeline:
        booking_id, caller = validation.booking_id(request.booking_id), self._caller()

        def read(conn: Connection) -> timeline.Timeline:
            found = timeline.read(conn, booking_id)
            if found is None or not caller.reaches(basecamp_id=found.booking.basecamp_id, created_by=found.booking.created_by):
                raise NotFound(f"no booking {booking_id}")
            return found

        return oconvert.timeline_pb(read_transaction(self._engine, read))

    @guarded
    def ListActions(self, request: opb.ListActionsRequest, context: grpc.ServicerContext) -> opb.ListActionsResponse:
        booking_id, size, token = ovalidation.actions_page(request)
        caller = self._caller()
        after = _decode_after(token) if token else None
        found = read_transaction(
            self._engine, lambda conn: records.recent(conn, booking_id=booking_id, basecamps=caller.basecamps, page_size=size, after=after)
        )
        page, more = found[:size], len(found) > size
        next_token = _encode_after(page[-1].requested_at, page[-1].action_id) if more else ""
        return opb.ListActionsResponse(actions=[oconvert.record_pb(r) for r in page], next_page_token=next_token)

    def _act(self, action: Action, request: opb.BookingActionRequest, context: grpc.ServicerContext) -> opb.ActionOutcome:
        asked, caller = ovalidation.booking_action(request), self._caller()
        one = actions.Request(action, asked.booking_id, caller.own_key(asked.key), asked.reason)
        outcome = actions.run_one(self._operator, caller, one, wait_seconds=asked.wait_seconds, deadline=self._deadline(context, asked.wait_seconds))
        return oconvert.outcome_pb(outcome)

    def _caller(self) -> Caller:
        return caller_of(identity.current(), self._config.region)

    def _deadline(self, context: grpc.ServicerContext, wait_seconds: float) -> float:
        """When the answer must leave: before the caller's deadline, or after the wait and a margin."""
        deadline = deadline_of(context)
        if deadline is None:
            return time.monotonic() + wait_seconds + _NO_DEADLINE_MARGIN_SECONDS
        return deadline - _ANSWER_MARGIN_SECONDS


def _encode_after(requested_at: datetime, action_id: str) -> str:
    return base64.urlsafe_b64encode(f"{requested_at.isoformat()}|{action_id}".encode()).decode()


def _decode_after(token: str) -> tuple[datetime, str]:
    try:
        at, action_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(at), str(uuid.UUID(action_id))
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidRequest("page_token is not a token this server issued") from error
