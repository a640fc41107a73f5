"""The trek coordinators a node knows, and asking them for a trek's decision.

ARCHITECTURE.md §5. A node dials only the coordinators its cluster names
(``NodeConfig.coordinator_targets``), never an address a caller wrote in a PrepareLeg:
one channel per known coordinator, opened on first use and kept for the node's life, so
at most ``COORDINATOR_TARGETS_MAX`` channels whatever callers send. A fence row naming an
address the node does not know (one written before targets were checked) is asked of the
cluster's first coordinator instead: that is who decides now, and a trek it never
recorded is aborted (presumed abort).

The coordinator answers a trek it never recorded with ABORT; a trek id it cannot read
(INVALID_ARGUMENT) or a trek it says does not exist (NOT_FOUND) is the same answer here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from ridgeline.regional.config import COORDINATOR_TARGETS_MAX
from ridgeline.regional.errors import CoordinatorUnavailable
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: How long one question to a coordinator may take.
ASK_TIMEOUT_SECONDS = 2.0

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
    """GetDecision over one channel per known coordinator (thread-safe)."""

    def __init__(self, targets: Sequence[str], transport: Transport) -> None:
        self.targets = tuple(dict.fromkeys(targets))
        self._transport = transport  # the node's own pair: GetDecision answers only the node role
        assert len(self.targets) <= COORDINATOR_TARGETS_MAX, f"{len(self.targets)} coordinators; at most {COORDINATOR_TARGETS_MAX}"
        self._stubs: dict[str, tpb_grpc.TrekServiceStub] = {}
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()

    def knows(self, target: str) -> bool:
        return target in self.targets

    def answer(self, target: str, trek_id: str, *, timeout_seconds: float = ASK_TIMEOUT_SECONDS) -> Answer:
        """The log's answer about ``trek_id`` from the coordinator a fence names (or the
        cluster's first, for a target it does not know). Raises grpc.RpcError when the
        coordinator does not answer, CoordinatorUnavailable when the node knows none."""
        assert timeout_seconds > 0, timeout_seconds
        stub = self._stub(target)
        try:
            reply = stub.GetDecision(tpb.GetDecisionRequest(trek_id=trek_id), timeout=timeout_seconds)
        except grpc.RpcError as error:
            if error.code() in NO_SUCH_TREK:
                return _NO_SUCH_TREK_ANSWER
            raise
        return Answer(reply.decision, reply.state)

    def __call__(self, target: str, trek_id: str) -> int:
        """The decision alone: the resolver's question."""
        return self.answer(target, trek_id).decision

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    def _stub(self, target: str) -> tpb_grpc.TrekServiceStub:
        if not self.targets:
            raise CoordinatorUnavailable("this node knows no trek coordinator (--coordinator, or [coordinator] listen in the cluster file)")
        chosen = target if target in self.targets else self.targets[0]
        with self._lock:
            if chosen not in self._stubs:
                channel = self._transport.channel(chosen)
                self._channels.append(channel)
                self._stubs[chosen] = tpb_grpc.TrekServiceStub(channel)
            assert len(self._stubs) <= len(self.targets), "a channel to a coordinator the node does not know"
            return self._stubs[chosen]
