"""TrekService: unpack, call the coordinator, pack; every failure becomes a status, never a traceback.

A follower (another coordinator holds the leader lease) answers every call UNAVAILABLE,
naming the leader it knows in the trailing metadata (``routing.coordinator_set``), and
so does a leader whose write found its epoch stale: the caller asks the leader instead.

PlanTrek and CancelTrek name their caller in the decision log (``ridgeline.trust.identity``:
``planner:<principal>``, or ``anonymous`` through an ``--insecure`` coordinator).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from ridgeline.global_coordinator import validation
from ridgeline.global_coordinator.convert import decision_pb, trek_pb
from ridgeline.global_coordinator.errors import (
    InvalidTrek,
    NotLeader,
    ParticipantsUnreachable,
    StoreUnavailable,
    TrekError,
    TrekNotFound,
    TrekStateConflict,
)
from ridgeline.global_coordinator.participants import Participants
from ridgeline.global_coordinator.protocol import Coordinator
from ridgeline.routing.coordinator_set import LEADER_METADATA_KEY
from ridgeline.trust.identity import actor_of, current
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

_log = logging.getLogger(__name__)

#: A waiting PlanTrek answers this long before the caller's deadline, with the trek as it is.
WAIT_MARGIN_SECONDS = 0.05
#: A waiting PlanTrek without a deadline waits at most this long.
WAIT_MAX_SECONDS = 60.0

_CODES: tuple[tuple[type[TrekError], grpc.StatusCode], ...] = (
    (InvalidTrek, grpc.StatusCode.INVALID_ARGUMENT),
    (TrekNotFound, grpc.StatusCode.NOT_FOUND),
    (TrekStateConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ParticipantsUnreachable, grpc.StatusCode.UNAVAILABLE),
    (NotLeader, grpc.StatusCode.UNAVAILABLE),
)

Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[["TrekServicer", Request, grpc.ServicerContext], Response]


def guarded(method: Method) -> Method:
    """Leader only (a follower sends the caller to the leader); every failure a status (also for :mod:`.operator_servicer`)."""

    @functools.wraps(method)
    def wrapper(self: TrekServicer, request: Request, context: grpc.ServicerContext) -> Response:
        try:
            self._coordinator.ensure_leading()
            return method(self, request, context)
        except NotLeader as error:
            if error.leader_address:
                context.set_trailing_metadata(((LEADER_METADATA_KEY, error.leader_address),))
            code, message = grpc.StatusCode.UNAVAILABLE, f"{error}; " + (f"the leader is {error.leader_address}" if error.leader_address else "no leader known yet, retry shortly")
        except TrekError as error:
            code = next((c for cls, c in _CODES if isinstance(error, cls)), grpc.StatusCode.UNKNOWN)
            message = str(error)
        except Exception:  # noqa: BLE001 - the edge answers every failure with a status
            reference = uuid.uuid4().hex[:12]
            _log.exception("%s failed (reference %s)", method.__name__, reference)
            code, message = grpc.StatusCode.INTERNAL, f"internal error (reference {reference})"
        context.abort(code, message)
        raise AssertionError("context.abort always raises")  # pragma: no cover

    return wrapper


class TrekServicer(tpb_grpc.TrekServiceServicer):
    def __init__(self, coordinator: Coordinator, participants: Participants) -> None:
        self._coordinator = coordinator
        self._participants = participants

    @guarded
    def PlanTrek(self, request: tpb.PlanTrekRequest, context: grpc.ServicerContext) -> tpb.Trek:
        trek = validation.trek_request(request, self._participants)
        wait = None
        if request.wait:
            remaining = context.time_remaining()
            wait = WAIT_MAX_SECONDS if remaining is None else max(0.0, min(WAIT_MAX_SECONDS, remaining - WAIT_MARGIN_SECONDS))
        return trek_pb(self._coordinator.plan(trek, wait_seconds=wait, actor=actor_of(current())))

    @guarded
    def GetTrek(self, request: tpb.GetTrekRequest, context: grpc.ServicerContext) -> tpb.Trek:
        return trek_pb(self._coordinator.get(validation.trek_id(request.trek_id)))

    @guarded
    def CancelTrek(self, request: tpb.CancelTrekRequest, context: grpc.ServicerContext) -> tpb.Trek:
        reason = validation.text(request.reason, "reason", required=False)
        return trek_pb(self._coordinator.cancel(validation.trek_id(request.trek_id), reason, actor=actor_of(current())))

    @guarded
    def ListTreks(self, request: tpb.ListTreksRequest, context: grpc.ServicerContext) -> tpb.ListTreksResponse:
        state, stuck_after, limit = validation.list_filter(request)
        treks = self._coordinator.treks(state=state, stuck_after_seconds=stuck_after, limit=limit)
        return tpb.ListTreksResponse(treks=[trek_pb(t) for t in treks])

    @guarded
    def GetDecision(self, request: tpb.GetDecisionRequest, context: grpc.ServicerContext) -> tpb.GetDecisionResponse:
        trek_id = validation.trek_id(request.trek_id)
        return decision_pb(trek_id, *self._coordinator.decision_for(trek_id))
