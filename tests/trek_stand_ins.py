"""Stand-in participants for coordinator tests that are about the decision log, the actor
on the record or the provider's money, not about the participants (those run real nodes:
tests/treks)."""

from __future__ import annotations

import time

import grpc

from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator.protocol import Coordinator
from ridgeline.v1 import trek_pb2 as tpb


class LandingLegs:
    """A participant whose every leg call lands (an abort of a leg never prepared, or already aborted)."""

    def __getattr__(self, method: str):  # noqa: ANN204 - CommitLeg, AbortLeg, CancelLeg
        return lambda request, timeout: tpb.TrekLegReply(trek_id=request.trek_id, leg_index=request.leg_index)


class LandingParticipants:
    """One region whose nodes answer every leg call with ``legs`` (by default: it lands)."""

    def __init__(self, legs: object | None = None) -> None:
        self._legs = legs if legs is not None else LandingLegs()

    def region_of(self, basecamp_id: str) -> str | None:
        return "eu-alps"

    def leg_stub(self, region: str, basecamp_id: str) -> object:
        return self._legs

    def redirected(self, error: grpc.RpcError, basecamp_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


def drive_until_final(coordinator: Coordinator, trek_id: str, timeout_seconds: float) -> log.TrekRecord:
    """Starts ``coordinator`` (it takes the lease and redrives), waits until the trek is final
    or the time is up, stops it; returns the trek as it then stands."""
    coordinator.start()
    try:
        until = time.monotonic() + timeout_seconds
        while time.monotonic() < until and not coordinator.get(trek_id).final:
            time.sleep(0.05)
        return coordinator.get(trek_id)
    finally:
        coordinator.stop()
