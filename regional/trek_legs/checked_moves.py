"""CommitLeg and CancelLeg as the coordinator's log allows them, and never otherwise.

ARCHITECTURE.md §5, invariants 5 (treks are atomic) and 4 (money balances). A plain call
to a node must not confirm a leg of a trek that was never committed (a confirmed booking
with no trek, no settlement and no charge), nor cancel a leg of a committed trek whose
charge stands. So before moving a leg the node asks the coordinator its fence names
(:mod:`.coordinators`) and moves it only when the log agrees:

- commit only when the decision is COMMIT (the coordinator drives commits then);
- cancel only when the trek is cancelling or cancelled (the coordinator moves the log to
  cancelling before it sends CancelLeg, ``global_coordinator/protocol.py``).

A leg already at the target answers as it is without asking (a retried call costs one
read); any other state is refused as before. The question is asked between the read and
the move, outside any transaction. A refusal is FAILED_PRECONDITION (DecisionRefused) and
writes nothing; a coordinator that does not answer is UNAVAILABLE (CoordinatorUnavailable),
which the coordinator retries until its commit lands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import grpc
from sqlalchemy import Engine

from ridgeline.regional import errors
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.trek_legs.coordinators import ASK_TIMEOUT_SECONDS, Answer, KnownCoordinators
from ridgeline.routing.leases import Fence
from ridgeline.v1 import trek_pb2 as tpb

_CANCELLING = frozenset({tpb.TREK_STATE_CANCELLING, tpb.TREK_STATE_CANCELLED})


def commit(
    engine: Engine, key: legs.LegKey, *, actor: str, coordinators: KnownCoordinators, fence: Fence, now: datetime, deadline: float | None = None
) -> legs.Leg:
    """CommitLeg: prepared → committed, once the coordinator's log says COMMIT."""
    return _checked(
        engine, key, legs.LegState.PREPARED, legs.LegState.COMMITTED, legs.commit,
        lambda answer: answer.decision == tpb.DECISION_COMMIT, "commit", actor, coordinators, fence, now, deadline,
    )  # fmt: skip


def cancel(
    engine: Engine, key: legs.LegKey, *, actor: str, coordinators: KnownCoordinators, fence: Fence, now: datetime, deadline: float | None = None
) -> legs.Leg:
    """CancelLeg: committed → cancelled, once the coordinator's log shows the trek cancelling."""
    return _checked(
        engine, key, legs.LegState.COMMITTED, legs.LegState.CANCELLED, legs.cancel,
        lambda answer: answer.state in _CANCELLING, "cancel", actor, coordinators, fence, now, deadline,
    )  # fmt: skip


def _checked(
    engine: Engine,
    key: legs.LegKey,
    source: legs.LegState,
    target: legs.LegState,
    move: Callable[..., legs.Leg],
    allowed: Callable[[Answer], bool],
    operation: str,
    actor: str,
    coordinators: KnownCoordinators,
    fence: Fence,
    now: datetime,
    deadline: float | None,
) -> legs.Leg:
    leg, coordinator = legs.read(engine, key, deadline=deadline)
    if leg.state is target:
        return leg  # a repeat: answered as it is, without asking
    where = f"trek {key.trek_id} leg {key.leg_index}"
    if leg.state is not source:
        raise errors.IllegalTransition(f"{where} is {leg.state.value}; {operation} needs it {source.value}")
    answer = _ask(coordinators, coordinator, key.trek_id, deadline)
    if not allowed(answer):
        raise errors.DecisionRefused(f"{where}: {operation} refused, the coordinator's log says {answer.describe()}; the leg stays {source.value}")
    moved = move(engine, key, actor=actor, fence=fence, now=now, deadline=deadline)
    assert moved.state is target, f"{where}: {operation} answered {moved.state}"
    return moved


def _ask(coordinators: KnownCoordinators, target: str, trek_id: str, deadline: float | None) -> Answer:
    timeout_seconds = ASK_TIMEOUT_SECONDS if deadline is None else min(ASK_TIMEOUT_SECONDS, deadline - time.monotonic())
    if timeout_seconds <= 0:
        raise errors.DeadlineExceeded(f"the call's deadline passed before the coordinator could be asked about trek {trek_id}")
    try:
        return coordinators.answer(target, trek_id, timeout_seconds=timeout_seconds)
    except grpc.RpcError as error:
        raise errors.CoordinatorUnavailable(
            f"the trek coordinator did not answer about trek {trek_id} ({error.code().name}); nothing was changed, retry later"
        ) from None
