"""The trek coordinators a node knows, and asking them for a trek's decision.

ARCHITECTURE.md §5. A node dials only the coordinators its cluster names
(``NodeConfig.coordinator_targets``), never an address a caller wrote in a PrepareLeg:
one channel per known coordinator, opened on first use and kept for the node's life, so
at most ``COORDINATOR_TARGETS_MAX`` channels whatever callers send. The question goes
first to the coordinator the leg's fence row names, and from there to whichever of the
known coordinators leads (``routing.coordinator_set``: a follower's hint, or the next
one when a coordinator is dead or paused). A fence row naming an address the node does
not know (one written before targets were checked) is asked of the leader it last
reached: that is who decides now, and a trek it never recorded is aborted (presumed abort).

The coordinator answers a trek it never recorded with ABORT; a trek id it cannot read
(INVALID_ARGUMENT) or a trek it says does not exist (NOT_FOUND) is the same answer here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from ridgeline.regional.config import COORDINATOR_TARGETS_MAX
from ridgeline.regional.errors import CoordinatorUnavailable
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import trek_pb2 as tpb

#: How long one question to the coordinators may take.
ASK_TIMEOUT_SECONDS = 2.0
#: How long one coordinator may take to answer before the next is asked (a paused one never does).
ASK_ONE_TIMEOUT_SECONDS = 0.8

#: Answers that mean the coordinator has no such trek: presumed abort.
NO_SUCH_TREK = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT})


@dataclass(frozen=True)
class Answer:
    """What the coordinator's log says about a trek (``trek_pb2`` enum values)."""

    decision: int
    #: UNSPECIFIED: the coordinator never recorded the trek.
    state: int

    def describe(self) -> str:
        decision = tpb.Decision.Name(self.decision).removeprefix("DECISION_").lower()
        state = tpb.TrekState.Name(self.state).removeprefix("TREK_STATE_").lower()
        return f"decision {decision}, " + ("trek unknown to the coordinator" if self.state == tpb.TREK_STATE_UNSPECIFIED else f"trek {state}")


_NO_SUCH_TREK_ANSWER = Answer(tpb.DECISION_ABORT, tpb.TREK_STATE_UNSPECIFIED)


class KnownCoordinators:
    """GetDecision over one channel per known coordinator, answered by the leader (thread-safe)."""

    def __init__(self, targets: Sequence[str], transport: Transport) -> None:
        self.targets = tuple(dict.fromkeys(targets))
        assert len(self.targets) <= COORDINATOR_TARGETS_MAX, f"{len(self.targets)} coordinators; at most {COORDINATOR_TARGETS_MAX}"
        # The node's own pair: GetDecision answers only the node role.
        self._set = CoordinatorSet(self.targets, transport) if self.targets else None

    def knows(self, target: str) -> bool:
        return target in self.targets

    def answer(self, target: str, trek_id: str, *, timeout_seconds: float = ASK_TIMEOUT_SECONDS) -> Answer:
        """The log's answer about ``trek_id`` from the leading coordinator, asking the one a
        fence names first. Raises grpc.RpcError when no coordinator answers in time,
        CoordinatorUnavailable when the node knows none."""
        assert timeout_seconds > 0, timeout_seconds
        if self._set is None:
            raise CoordinatorUnavailable("this node knows no trek coordinator (--coordinator, or [coordinator] listen in the cluster file)")
        try:
            reply = self._set.call(
                "GetDecision", tpb.GetDecisionRequest(trek_id=trek_id), timeout_seconds=timeout_seconds,
                attempt_timeout_seconds=min(ASK_ONE_TIMEOUT_SECONDS, timeout_seconds), first=target,
            )  # fmt: skip
        except grpc.RpcError as error:
            if error.code() in NO_SUCH_TREK:
                return _NO_SUCH_TREK_ANSWER
            raise
        return Answer(reply.decision, reply.state)

    def __call__(self, target: str, trek_id: str) -> int:
        """The decision alone: the resolver's question."""
        return self.answer(target, trek_id).decision

    def close(self) -> None:
        if self._set is not None:
            self._set.close()
