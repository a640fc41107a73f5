"""TrekOperatorService: an SRE redrives a trek now or aborts one not yet decided.

Served by the leader only, like TrekService (:func:`.servicer.guarded`: a follower answers
UNAVAILABLE naming the leader). Who may call is the authorization table's (``trust.policy``:
the sre role only). The work and its record are :mod:`.operator_actions`; this edge
validates, bounds the wait by the caller's deadline and packs the answer.
"""

from __future__ import annotations

import grpc

from ridgeline.global_coordinator import validation
from ridgeline.global_coordinator.convert import timestamp_pb, trek_pb
from ridgeline.global_coordinator.operator_actions import Outcome, Result, TrekOperator
from ridgeline.global_coordinator.protocol import Coordinator
from ridgeline.global_coordinator.servicer import guarded
from ridgeline.trust.identity import actor_of, current
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc

#: How long an action waits for the trek to settle without a caller's deadline.
WAIT_DEFAULT_SECONDS = 10.0
#: The answer leaves the wait this long before the caller's deadline, so it arrives in time.
ANSWER_MARGIN_SECONDS = 0.5

_RESULT_PB = {result: opb.ActionResult.Value(f"ACTION_RESULT_{result.name}") for result in Result}


class TrekOperatorServicer(opb_grpc.TrekOperatorServiceServicer):
    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._operator = TrekOperator(coordinator)

    @guarded
    def RedriveTrek(self, request: opb.TrekActionRequest, context: grpc.ServicerContext) -> opb.TrekActionOutcome:
        key, trek_id, reason = _action(request)
        outcome = self._operator.redrive(key, trek_id, reason, actor=actor_of(current()), wait_seconds=_wait(context))
        return _outcome_pb(opb.OPERATOR_ACTION_REDRIVE_TREK, outcome)

    @guarded
    def AbortTrek(self, request: opb.TrekActionRequest, context: grpc.ServicerContext) -> opb.TrekActionOutcome:
        key, trek_id, reason = _action(request)
        outcome = self._operator.abort(key, trek_id, reason, actor=actor_of(current()), wait_seconds=_wait(context))
        return _outcome_pb(opb.OPERATOR_ACTION_ABORT_TREK, outcome)


def _action(request: opb.TrekActionRequest) -> tuple[str, str, str]:
    key = validation.text(request.idempotency_key, "idempotency_key")
    return key, validation.trek_id(request.trek_id), validation.text(request.reason, "reason", required=False)


def _wait(context: grpc.ServicerContext) -> float:
    remaining = context.time_remaining()
    return WAIT_DEFAULT_SECONDS if remaining is None else max(0.0, min(WAIT_DEFAULT_SECONDS, remaining - ANSWER_MARGIN_SECONDS))


def _outcome_pb(action: opb.OperatorAction, outcome: Outcome) -> opb.TrekActionOutcome:
    record = outcome.record
    assert record.result is not None, "an answered action has its result recorded"
    return opb.TrekActionOutcome(
        action=action, trek_id=record.trek_id, result=_RESULT_PB[record.result], detail=record.detail, trek=trek_pb(outcome.trek), actor=record.actor, at=timestamp_pb(record.requested_at)
    )
